-- Every statement jobfleet runs, by name. Python loads them with jobfleet.queries.
-- Parameters are always bound (%(name)s); nothing here is built from user strings.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS jobfleet_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_lock
-- Held for the transaction: ten hosts running `jobfleet migrate` at once apply each file once.
SELECT pg_advisory_xact_lock(7235101, 1);

-- name: applied_migrations
SELECT version FROM jobfleet_migrations ORDER BY version;

-- name: record_migration
INSERT INTO jobfleet_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM jobfleet_migrations;

-- name: migrations_table_exists
SELECT to_regclass('jobfleet_migrations') IS NOT NULL;

-- name: enqueue
-- Options the caller left out (NULL) fall back to the type's registered defaults, then to the
-- table's. A repeated idempotency key inserts nothing and returns no row.
INSERT INTO jobs (type, queue, priority, run_at, max_attempts, timeout_seconds, backoff,
                  backoff_seconds, payload, idempotency_key)
SELECT %(type)s,
       coalesce(%(queue)s, t.queue, 'default'),
       coalesce(%(priority)s, t.priority, 0),
       coalesce(%(run_at)s, now() + make_interval(secs => coalesce(%(delay)s, 0))),
       coalesce(%(max_attempts)s, t.max_attempts, 5),
       coalesce(%(timeout)s, t.timeout_seconds),
       coalesce(%(backoff)s, t.backoff),
       coalesce(%(backoff_seconds)s, t.backoff_seconds),
       %(payload)s::jsonb,
       %(idempotency_key)s
FROM (SELECT 1) AS one
LEFT JOIN job_types t ON t.type = %(type)s
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id;

-- name: job_id_by_idempotency_key
SELECT id FROM jobs WHERE idempotency_key = %(key)s;

-- name: type_defaults
SELECT queue, priority, max_attempts, timeout_seconds, backoff, backoff_seconds
FROM job_types WHERE type = %(type)s;

-- name: reserve_job_ids
-- enqueue_many COPYs rows with ids taken here, so it can return them in payload order.
-- One row (an array), not one row per id: fetching 100k rows cost a tenth of a second. The
-- sequence is named as a constant: looked up by pg_get_serial_sequence() it was resolved
-- once per id (0.2 s for 100k, against 0.03 s).
SELECT array_agg(nextval('jobs_id_seq'::regclass) ORDER BY g)
FROM generate_series(1, %(n)s) AS g;

-- name: copy_jobs
COPY jobs (id, type, queue, priority, run_at, max_attempts, timeout_seconds, backoff,
           backoff_seconds, payload) FROM STDIN;

-- name: db_now
SELECT now();

-- name: claim
-- One statement claims a batch: the ready jobs this node may run, best first, skipping rows
-- another claimer holds. Each claim starts a new attempt under a fresh lease.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state = 'queued'
      AND run_at <= now()
      AND type = ANY(%(types)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET state = 'running',
    attempt = j.attempt + 1,
    locked_by = %(node)s,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
          extract(epoch FROM now() - j.run_at)::float8 AS waited;

-- name: complete_batch
-- Fenced: only the attempt that still holds the job (same attempt, still running) may finish
-- it. Rows that do not match are late results of a replaced attempt and are dropped. The
-- successful attempt is recorded on the job row itself (see the job_attempts view).
-- The batch travels as comma-separated numbers and one JSON array of results: PostgreSQL
-- parses those in C, where building array literals costs the supervisor a third of its time.
-- The planner: `j.id = ANY(...)` makes the primary key the way in, and the fence compares the
-- state with a column of the batch (`d.must_be`, behind OFFSET 0) rather than a constant:
-- statistics gathered while nothing ran put `state = 'running'` at one row, and the planner
-- then joined the batch to it by nested loop (O(batch^2): 470 ms for 2000 jobs).
UPDATE jobs j
SET state = 'succeeded', result = d.result, error = NULL,
    started_at = to_timestamp(d.started / 1e6), finished_at = to_timestamp(d.finished / 1e6),
    attempt_node = %(node)s, attempt_pid = d.pid, locked_by = NULL, lease_expires_at = NULL
FROM (
    SELECT u.id, u.attempt, u.pid, u.started, u.finished, r.results -> (u.n::integer - 1) AS result,
           'running'::text AS must_be
    FROM unnest(string_to_array(%(ids)s, ',')::bigint[],
                string_to_array(%(attempts)s, ',')::integer[],
                string_to_array(%(pids)s, ',', '')::integer[],
                string_to_array(%(started)s, ',')::bigint[],
                string_to_array(%(finished)s, ',')::bigint[])
         WITH ORDINALITY AS u(id, attempt, pid, started, finished, n)
    -- The results are parsed once here, not once per row.
    CROSS JOIN (SELECT %(results)s::jsonb AS results OFFSET 0) AS r
    OFFSET 0
) AS d
WHERE j.id = ANY(string_to_array(%(ids)s, ',')::bigint[]) AND j.id = d.id
  AND j.attempt = d.attempt AND j.state = d.must_be
RETURNING j.id;

-- name: fail_batch
-- Fenced like complete_batch. A failed attempt goes back to `queued` after its backoff, or to
-- `dead` once its attempts are spent or the failure is final; a job whose cancellation was
-- requested ends `cancelled` instead of retrying.
WITH failed AS (
    UPDATE jobs j
    SET state = CASE
            WHEN j.cancel_requested OR d.outcome = 'cancelled' THEN 'cancelled'
            WHEN d.final OR j.attempt >= j.max_attempts THEN 'dead'
            ELSE 'queued' END,
        run_at = CASE
            WHEN j.cancel_requested OR d.outcome = 'cancelled' OR d.final
                 OR j.attempt >= j.max_attempts THEN j.run_at
            ELSE now() + make_interval(secs => jobfleet_backoff_seconds(
                coalesce(j.backoff, d.backoff), j.attempt,
                coalesce(j.backoff_seconds, d.backoff_seconds, %(backoff_base)s),
                %(backoff_max)s)) END,
        finished_at = CASE
            WHEN j.cancel_requested OR d.outcome = 'cancelled' OR d.final
                 OR j.attempt >= j.max_attempts THEN now() END,
        -- A finished job keeps its last attempt's start; a queued one has none yet.
        started_at = CASE
            WHEN j.cancel_requested OR d.outcome = 'cancelled' OR d.final
                 OR j.attempt >= j.max_attempts THEN d.started_at END,
        error = d.error, locked_by = NULL, lease_expires_at = NULL
    FROM (
        SELECT u.*, 'running'::text AS must_be
        FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(outcomes)s::text[],
                    %(errors)s::text[], %(finals)s::boolean[], %(backoffs)s::text[],
                    %(backoff_seconds)s::double precision[], %(pids)s::integer[],
                    %(started)s::timestamptz[], %(finished)s::timestamptz[])
             AS u(id, attempt, outcome, error, final, backoff, backoff_seconds, pid, started_at,
                  finished_at)
        OFFSET 0
    ) AS d
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
      AND j.state = d.must_be
    RETURNING j.id, j.type, j.queue, j.attempt, j.state, d.outcome, d.error, d.pid,
              d.started_at, d.finished_at, j.run_at
), logged AS (
    INSERT INTO job_attempt_log (job_id, attempt, outcome, error, node, pid, started_at,
                                 finished_at)
    SELECT id, attempt, CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE outcome END, error,
           %(node)s, pid, started_at, finished_at
    FROM failed
)
-- What became of each (for the metrics): back in the queue, dead or cancelled; and, for a
-- retry, how many seconds until it falls due (the node that failed it claims it then).
SELECT id, type, queue, state, outcome,
       CASE WHEN state = 'queued' THEN extract(epoch FROM run_at - now())::float8 END
FROM failed;

-- name: release_batch
-- Claimed but never started (shutdown): back to the queue without spending an attempt; idle
-- nodes are told.
WITH released AS (
    UPDATE jobs j
    SET state = 'queued', attempt = j.attempt - 1, locked_by = NULL, lease_expires_at = NULL,
        started_at = NULL
    FROM (
        SELECT u.*, 'running'::text AS must_be
        FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS u(id, attempt)
        OFFSET 0
    ) AS d
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
      AND j.state = d.must_be
    RETURNING j.id
), told AS (
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM released)
)
SELECT id FROM released LEFT JOIN told ON true;

-- name: cancel_job
-- A queued job is cancelled at once; a running one is flagged, and its node is told at once
-- (NOTIFY; lease renewal reports the flag too, should the notification be missed).
WITH flagged AS (
    UPDATE jobs
    SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
        cancel_requested = true
    WHERE id = %(id)s AND state IN ('queued', 'running')
    RETURNING id, state
)
SELECT state, CASE WHEN state = 'running' THEN pg_notify('jobfleet_cancel', id::text) END
FROM flagged;

-- name: job_state
SELECT state FROM jobs WHERE id = %(id)s;

-- name: job_wait_state
SELECT state, result, error FROM jobs WHERE id = %(id)s;

-- name: job_by_id
SELECT id, type, queue, state, priority, attempt, max_attempts, run_at, created_at,
       started_at, finished_at, timeout_seconds, backoff, backoff_seconds, payload, result,
       error, progress, idempotency_key, cancel_requested, locked_by, lease_expires_at
FROM jobs WHERE id = %(id)s;

-- name: attempts_of_job
SELECT attempt, outcome, node, pid, started_at, finished_at, error
FROM job_attempts WHERE job_id = %(id)s ORDER BY attempt;

-- name: list_jobs
SELECT id, type, queue, state, priority, attempt, max_attempts, run_at, created_at,
       finished_at, error
FROM jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: state_counts
SELECT state, count(*) FROM jobs GROUP BY state;

-- name: live_nodes
SELECT name, hostname, pid, workers, busy, queues, types, started_at, last_heartbeat
FROM nodes
WHERE last_heartbeat > now() - make_interval(secs => %(stale_after)s)
ORDER BY name;

-- name: unhandled_types
-- Types with ready work that no live node has a handler for.
SELECT DISTINCT j.type
FROM jobs j
WHERE j.state = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM nodes n
      WHERE n.last_heartbeat > now() - make_interval(secs => %(stale_after)s)
        AND j.type = ANY(n.types)
        AND (n.queues IS NULL OR j.queue = ANY(n.queues)))
ORDER BY j.type;

-- name: upsert_node
INSERT INTO nodes (name, hostname, pid, workers, busy, queues, types)
VALUES (%(name)s, %(hostname)s, %(pid)s, %(workers)s, %(busy)s, %(queues)s, %(types)s)
ON CONFLICT (name) DO UPDATE
SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, workers = EXCLUDED.workers,
    busy = EXCLUDED.busy, queues = EXCLUDED.queues, types = EXCLUDED.types,
    started_at = CASE WHEN nodes.pid = EXCLUDED.pid THEN nodes.started_at ELSE now() END,
    last_heartbeat = now();

-- name: delete_node
DELETE FROM nodes WHERE name = %(name)s AND pid = %(pid)s;

-- name: upsert_job_type
INSERT INTO job_types (type, queue, priority, max_attempts, timeout_seconds, backoff,
                       backoff_seconds)
VALUES (%(type)s, %(queue)s, %(priority)s, %(max_attempts)s, %(timeout_seconds)s, %(backoff)s,
        %(backoff_seconds)s)
ON CONFLICT (type) DO UPDATE
SET queue = EXCLUDED.queue, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
    timeout_seconds = EXCLUDED.timeout_seconds, backoff = EXCLUDED.backoff,
    backoff_seconds = EXCLUDED.backoff_seconds, updated_at = now()
WHERE (job_types.queue, job_types.priority, job_types.max_attempts, job_types.timeout_seconds,
       job_types.backoff, job_types.backoff_seconds)
      IS DISTINCT FROM
      (EXCLUDED.queue, EXCLUDED.priority, EXCLUDED.max_attempts, EXCLUDED.timeout_seconds,
       EXCLUDED.backoff, EXCLUDED.backoff_seconds);

-- name: dlq_list
SELECT id, type, queue, attempt, max_attempts, last_error, created_at, finished_at
FROM dead_jobs
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: dlq_retry
-- Re-run dead jobs with a fresh budget of attempts; attempt numbers keep counting so the
-- history of the first run stays. Idle nodes are told.
WITH retried AS (
    UPDATE jobs
    SET state = 'queued', run_at = now(), started_at = NULL, finished_at = NULL,
        cancel_requested = false,
        max_attempts = attempt + (max_attempts - attempt_base), attempt_base = attempt
    WHERE state = 'dead' AND (%(all)s OR id = %(id)s)
    RETURNING id
), told AS (
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM retried)
)
SELECT id FROM retried LEFT JOIN told ON true;

-- name: dlq_purge
DELETE FROM jobs
WHERE state = 'dead'
  AND (%(older_than)s::double precision IS NULL
       OR finished_at < now() - make_interval(secs => %(older_than)s))
RETURNING id;

-- name: soonest_scheduled
-- Seconds until the soonest job this node could run that is queued for later (NULL: none).
-- Asked when the node's claims come back empty, so the ready part of the queue is empty and
-- the scan covers scheduled jobs only.
SELECT extract(epoch FROM min(run_at) - clock_timestamp())::float8
FROM jobs
WHERE state = 'queued' AND run_at > now()
  AND type = ANY(%(types)s::text[])
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]));

-- name: database_clock
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: burst_nothing_elsewhere
-- What keeps a --burst supervisor alive besides its own jobs: one it could run that is ready,
-- or running under another holder (it may fail and come back). Each half walks its partial
-- index and stops at the first row; the ORDER BY keeps the planner on jobs_ready even when
-- its statistics still count the backlog a drain has just emptied.
SELECT (SELECT id FROM jobs
        WHERE state = 'queued' AND run_at <= now()
          AND type = ANY(%(types)s::text[])
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
        ORDER BY priority DESC, run_at, id
        LIMIT 1) IS NULL
   AND (SELECT id FROM jobs
        WHERE lease_expires_at IS NOT NULL AND state = 'running' AND locked_by <> %(holder)s
          AND type = ANY(%(types)s::text[])
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
        LIMIT 1) IS NULL;

-- name: renew_leases
-- One statement renews every lease this node's supervisor holds (it knows their ids), and
-- tells it which of them someone asked to cancel.
UPDATE jobs
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(holder)s
RETURNING id, attempt, cancel_requested;

-- name: reap_lost_attempts
-- The lease reaper: running jobs whose holder stopped renewing (its lease expired `overdue`
-- seconds ago), or whose holder is an earlier run of the node `node` (restarted under the same
-- name), go back to the queue at once (or to dead once their attempts are spent), with the
-- attempt recorded `lost`. Safe to run from many nodes at once (SKIP LOCKED, fenced).
WITH expired AS (
    SELECT id, locked_by, started_at
    FROM jobs
    WHERE lease_expires_at IS NOT NULL
      AND state = 'running'
      AND (lease_expires_at < now() - make_interval(secs => %(overdue)s)
           OR (split_part(locked_by, '/', 1) = %(node)s AND locked_by <> %(holder)s))
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), lost AS (
    UPDATE jobs j
    SET state = CASE
            WHEN j.cancel_requested THEN 'cancelled'
            WHEN j.attempt >= j.max_attempts THEN 'dead'
            ELSE 'queued' END,
        run_at = CASE
            WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN j.run_at
            ELSE now() END,
        finished_at = CASE
            WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN now() END,
        started_at = CASE
            WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN e.started_at END,
        error = CASE
            WHEN split_part(e.locked_by, '/', 1) = %(node)s AND e.locked_by <> %(holder)s
            THEN 'node ' || %(node)s || ' restarted: its earlier run was gone with this attempt'
            ELSE 'lease expired: node ' || split_part(e.locked_by, '/', 1)
                 || ' stopped renewing it (node died, paused or cut off)' END,
        locked_by = NULL, lease_expires_at = NULL
    FROM expired e
    WHERE j.id = e.id
    RETURNING j.id, j.type, j.queue, j.attempt, j.state, j.error, e.locked_by, e.started_at
), logged AS (
    INSERT INTO job_attempt_log (job_id, attempt, outcome, error, node, pid, started_at,
                                 finished_at)
    SELECT id, attempt, CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE 'lost' END, error,
           split_part(locked_by, '/', 1), NULL, started_at, now()
    FROM lost
), told AS (  -- idle nodes hear of the requeued ones at once
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM lost WHERE state = 'queued')
)
SELECT id, type, queue, state FROM lost LEFT JOIN told ON true;

-- name: try_leadership
-- Session-level: the leader keeps it for as long as its connection lives.
SELECT pg_try_advisory_lock(7235101, 2);

-- name: node_in_use
SELECT hostname, pid, extract(epoch FROM now() - last_heartbeat)
FROM nodes
WHERE name = %(name)s AND last_heartbeat > now() - make_interval(secs => %(stale_after)s);

-- name: save_progress
-- Last value wins; only the attempt that holds the job may report.
UPDATE jobs j
SET progress = jsonb_build_object('fraction', d.fraction, 'message', d.message)
FROM (
    SELECT u.*, 'running'::text AS must_be
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[],
                %(fractions)s::double precision[], %(messages)s::text[])
         AS u(id, attempt, fraction, message)
    OFFSET 0
) AS d
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
  AND j.state = d.must_be;

-- name: prune_finished
-- Retention: succeeded and cancelled jobs older than `keep` seconds go, oldest first, a batch
-- at a time. Dead jobs stay for the dead-letter queue (`jobfleet dlq purge` removes them).
-- Ids grow with creation time and a job finishes after it is created, so every job old
-- enough to go lies before the first job created within `keep`: the scan stops there instead
-- of reading the whole table (a backlog of 1M young jobs cost a full scan a minute).
WITH young AS (
    SELECT id FROM jobs
    WHERE created_at >= now() - make_interval(secs => %(keep)s)
    ORDER BY id
    LIMIT 1
), doomed AS (
    SELECT id FROM jobs
    WHERE id < coalesce((SELECT id FROM young), 9223372036854775807)
      AND state IN ('succeeded', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(keep)s)
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs j USING doomed WHERE j.id = doomed.id
RETURNING j.id;

-- name: create_api_key
INSERT INTO api_keys (name, key_id, salt, secret_hash, scopes, rate_per_second, burst, tokens,
                      refilled_at)
VALUES (%(name)s, %(key_id)s, %(salt)s, %(secret_hash)s, %(scopes)s, %(rate)s, %(burst)s,
        %(burst)s, now())
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: list_api_keys
SELECT name, key_id, scopes, rate_per_second, created_at, revoked_at
FROM api_keys ORDER BY name;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name;

-- name: api_key_by_id
SELECT name, salt, secret_hash, scopes, rate_per_second, revoked_at IS NOT NULL AS revoked
FROM api_keys WHERE key_id = %(key_id)s;

-- name: take_api_token
-- The token bucket: refill by the time since the last request (capped at the burst), then
-- take one token if there is one. The row lock orders concurrent requests from every node.
-- `wait` is how long until a token is there (0 when one was taken).
UPDATE api_keys k
SET tokens = CASE WHEN b.available >= 1 THEN b.available - 1 ELSE b.available END,
    refilled_at = b.now
FROM (
    SELECT name, clock_timestamp() AS now,
           least(burst, tokens + rate_per_second
                 * extract(epoch FROM clock_timestamp() - refilled_at)) AS available
    FROM api_keys WHERE name = %(name)s
    FOR UPDATE
) AS b
WHERE k.name = b.name
RETURNING b.available >= 1 AS allowed,
          CASE WHEN b.available >= 1 THEN 0.0
               ELSE (1 - b.available) / k.rate_per_second END AS wait;

-- name: queue_counts
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

-- name: queue_gauges
-- The leader's periodic count for the queue-depth gauges: the live states and the dead, each
-- from its partial index (never a scan of the finished jobs), and the age of the oldest job
-- ready to run.
SELECT queue, 'queued' AS state, count(*),
       coalesce(extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())),
                0)::float8
FROM jobs WHERE state = 'queued' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*), 0 FROM jobs
WHERE lease_expires_at IS NOT NULL AND state = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'dead', count(*), 0 FROM jobs WHERE state = 'dead' GROUP BY queue;

-- name: node_heartbeat_ages
SELECT name, extract(epoch FROM now() - last_heartbeat)::float8 FROM nodes;
