"""The drill's own statements: reads of the contract's SQL surface (jobs, job_attempts, nodes)
plus the clean-up of its own queue. They live beside the drill rather than in sql/queries/
because the fleet never runs them; every value is a bound parameter."""

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
