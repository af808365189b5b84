"""The drill's own statements: reads of the contract's SQL surface (jobs, job_attempts, nodes),
its business table (drill_charges) and the clean-up of both. They live beside the drill
rather than in sql/queries/ because the fleet never runs them; every value is a bound
parameter."""

from __future__ import annotations

FOREIGN_JOBS = """
SELECT count(*) FROM jobs WHERE queue <> %(queue)s
"""

JOBS_TABLE_EXISTS = "SELECT to_regclass('jobs') IS NOT NULL"

# A previous drill's jobs (their attempts go with them: ON DELETE CASCADE) and node rows.
FORGET_PREVIOUS_DRILL = """
DELETE FROM jobs WHERE queue = %(queue)s
"""
FORGET_DRILL_NODES = """
DELETE FROM nodes WHERE name = ANY(%(names)s::text[])
"""

STATE_COUNTS = """
SELECT state, count(*) FROM jobs WHERE queue = %(queue)s GROUP BY state
"""

HELD_BY_NODE = """
SELECT split_part(locked_by, '/', 1), count(*)
FROM jobs WHERE queue = %(queue)s AND state = 'running'
GROUP BY 1
"""

HELD_JOBS = """
SELECT id, attempt FROM jobs
WHERE queue = %(queue)s AND state = 'running' AND split_part(locked_by, '/', 1) = %(node)s
"""

WHERE_NOW = """
SELECT id, attempt, state FROM jobs WHERE id = ANY(%(ids)s::bigint[])
"""

STATES_BY_KIND = """
SELECT type, state, count(*) FROM jobs WHERE id = ANY(%(ids)s::bigint[]) GROUP BY type, state
"""

OUTCOMES_BY_KIND = """
SELECT j.type, a.outcome, count(*)
FROM job_attempts a JOIN jobs j ON j.id = a.job_id
WHERE j.id = ANY(%(ids)s::bigint[])
GROUP BY j.type, a.outcome
"""

WRONG_END_STATE = """
SELECT count(*) FROM jobs
WHERE id = ANY(%(ids)s::bigint[]) AND state <> %(state)s
"""

SUCCEEDED_TWICE = """
SELECT count(*) FROM (
    SELECT job_id FROM job_attempts
    WHERE job_id = ANY(%(ids)s::bigint[]) AND outcome = 'succeeded'
    GROUP BY job_id HAVING count(*) > 1
) twice
"""

# Every attempt a job was given (1 .. attempt) has exactly one row in job_attempts: none lost
# from history, none recorded twice.
HISTORY_GAPS = """
SELECT count(*)
FROM jobs j
LEFT JOIN LATERAL (
    SELECT count(*) AS n, count(DISTINCT a.attempt) AS d, min(a.attempt) AS lo,
           max(a.attempt) AS hi
    FROM job_attempts a WHERE a.job_id = j.id
) h ON true
WHERE j.id = ANY(%(ids)s::bigint[])
  AND NOT (h.n = j.attempt AND h.d = j.attempt AND h.lo = 1 AND h.hi = j.attempt)
"""

# The attempts a struck node held, as history recorded them.
RECORDED_AS = """
SELECT a.outcome, a.node, count(*)
FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS h(id, attempt)
LEFT JOIN job_attempts a ON a.job_id = h.id AND a.attempt = h.attempt
GROUP BY a.outcome, a.node
"""

# The business table of the transactional kinds: what a charge handler writes through ctx.tx,
# one row per attempt that got as far as writing. Only committed rows are ever seen here.
CREATE_CHARGES = """
CREATE TABLE IF NOT EXISTS drill_charges (job_id bigint NOT NULL, attempt integer NOT NULL)
"""
FORGET_CHARGES = "TRUNCATE drill_charges"
DROP_CHARGES = "DROP TABLE IF EXISTS drill_charges"
# Run by the drill_charge handlers in their job's transaction (ctx.tx).
CHARGE = """
INSERT INTO drill_charges (job_id, attempt) VALUES (%(job_id)s, %(attempt)s)
"""

# Charge jobs whose rows are not exactly right: a succeeded job needs exactly one row, written
# by the attempt that succeeded; any other job (dead, or still unfinished) needs none.
CHARGES_WRONG = """
SELECT count(*)
FROM jobs j
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(c.attempt) AS attempt FROM drill_charges c WHERE c.job_id = j.id
) c ON true
WHERE j.id = ANY(%(ids)s::bigint[])
  AND NOT (CASE WHEN j.state = 'succeeded' THEN c.n = 1 AND c.attempt = j.attempt
                ELSE c.n = 0 END)
"""
# Rows for jobs of no charge kind (which never write): must be none.
CHARGES_ELSEWHERE = """
SELECT count(*) FROM drill_charges WHERE NOT job_id = ANY(%(ids)s::bigint[])
"""
CHARGES_TOTAL = "SELECT count(*) FROM drill_charges"
SUCCEEDED_AMONG = """
SELECT count(*) FROM jobs WHERE id = ANY(%(ids)s::bigint[]) AND state = 'succeeded'
"""

# The failover: each node's first claim at or after a moment (the promotion), read from every
# attempt's start; a claim is an attempt's start, whatever became of it.
FIRST_CLAIMS_SINCE = """
SELECT node, min(started_at) FROM (
    SELECT node, started_at FROM job_attempts WHERE job_id = ANY(%(ids)s::bigint[])
    UNION ALL
    SELECT split_part(locked_by, '/', 1), started_at FROM jobs
    WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running'
) a
WHERE started_at >= %(since)s
GROUP BY node
ORDER BY 2
"""
RUNNING_COUNT = """
SELECT count(*) FROM jobs WHERE queue = %(queue)s AND state = 'running'
"""
CLOCK = "SELECT clock_timestamp()"
# Which server a connection reached, and which start of it.
SERVER_IDENTITY = """
SELECT inet_server_addr(), inet_server_port(), pg_postmaster_start_time()
"""
