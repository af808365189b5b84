-- What people and scripts ask of the jobs: show, list, wait, status, cancel, the dead-letter queue (jobfleet.admin, the CLI, the HTTP API).
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: cancel_job
-- A queued job is cancelled at once; a running one is flagged, and its node is told at once
-- (NOTIFY; lease renewal reports the flag too, should the notification be missed). `ids`: one
-- job (jobfleet.cancel), or a batch that pick_jobs locked (jobfleet.bulk).
WITH flagged AS (
    UPDATE jobs
    SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
        cancel_requested = true
    WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('queued', 'running')
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
       error, progress, idempotency_key, cancel_requested, locked_by, lease_expires_at,
       attempt_node
FROM jobs WHERE id = %(id)s;

-- name: attempts_of_job
SELECT attempt, outcome, node, pid, started_at, finished_at, error
FROM job_attempts WHERE job_id = %(id)s ORDER BY attempt;

-- name: list_jobs
-- `node`: the node holding the job (its lease holder's node), else the one whose attempt
-- succeeded; a filter on it reads rows in id order until the page is full.
SELECT id, type, queue, state, priority, attempt, max_attempts, run_at, created_at,
       finished_at, error,
       coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) AS node
FROM jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(node)s::text IS NULL
       OR coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) = %(node)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: state_counts
SELECT state, count(*) FROM jobs GROUP BY state;

-- name: live_nodes
-- `busy` and `running` as they are now, not as of the node's last heartbeat (up to 5 s old),
-- from the jobs the node holds (the small index on leases): `running` counts them (a worker
-- runs several at once of its async and threaded types), `busy` the workers they keep busy,
-- at most `workers`. A node that prefetches short jobs counts every worker busy while it has a
-- batch in hand.
SELECT name, hostname, pid, workers, least(workers, held)::integer AS busy,
       held::integer AS running, queues, types, started_at, last_heartbeat
FROM (
    SELECT n.*, (SELECT count(*) FROM jobs j
                 WHERE j.lease_expires_at IS NOT NULL AND j.state = 'running'
                   AND split_part(j.locked_by, '/', 1) = n.name) AS held
    FROM nodes n
    WHERE n.last_heartbeat > now() - make_interval(secs => %(stale_after)s)
) n
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

-- name: dlq_list
SELECT id, type, queue, attempt, max_attempts, last_error, created_at, finished_at
FROM dead_jobs
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s;

-- name: dlq_purge
DELETE FROM jobs
WHERE state = 'dead'
  AND (%(older_than)s::double precision IS NULL
       OR finished_at < now() - make_interval(secs => %(older_than)s))
RETURNING id;

-- name: queue_counts
SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

-- name: paused_queues
SELECT name FROM queues WHERE paused ORDER BY name;

-- name: set_queue_paused
-- Pause or resume a queue (see 0007_queues.sql): claims read `queues` themselves, so a pause
-- holds from its commit on; a resume wakes idle nodes for the jobs waiting in the queue.
WITH changed AS (
    INSERT INTO queues (name, paused) VALUES (%(name)s, %(paused)s)
    ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, changed_at = now()
    RETURNING name, paused
), woken AS (
    SELECT pg_notify('jobfleet_jobs', '') FROM changed WHERE NOT paused
)
SELECT paused FROM changed LEFT JOIN woken ON true;

-- name: requeue_jobs
-- Jobs that ended (dead, or also cancelled: `states`) back to the queue with a fresh budget of
-- attempts: some (`ids`: one job, or a batch pick_jobs locked), or every one in those states
-- (`all`). Attempt numbers keep counting,
-- so the first run's history stays; idle nodes are told.
WITH retried AS (
    UPDATE jobs
    SET state = 'queued', run_at = now(), started_at = NULL, finished_at = NULL,
        cancel_requested = false,
        max_attempts = least(attempt::bigint + (max_attempts - attempt_base), 2147483647),
        attempt_base = attempt,
        -- Keyed again: the type's limit key may have changed since it ended.
        limit_key = jobfleet_limit_key(
            payload, (SELECT l.limit_key FROM type_limits l WHERE l.type = jobs.type))
    WHERE state = ANY(%(states)s::text[]) AND (%(all)s OR id = ANY(%(ids)s::bigint[]))
    RETURNING id
), told AS (
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM retried)
)
SELECT id FROM retried LEFT JOIN told ON true;

-- name: pick_jobs
-- One batch of bulk maintenance (jobfleet.bulk): up to `limit` jobs in `state` of the type
-- and queue asked for (NULL: any), locked until the batch's short transaction commits. SKIP
-- LOCKED: a row a claim (or another batch) holds is passed over, never waited for, so a
-- bulk cancel never holds up the hot path nor waits on it. No ORDER BY: under index_plans the
-- state's partial index (jobs_ready for queued, jobs_dead for dead) is read as it comes and
-- the scan stops at the batch; type and queue are checked on the rows it reaches (the type on
-- jobs_ready's entries, where it is the last key).
SELECT id FROM jobs
WHERE state = %(state)s
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: cron_list
-- Periodic jobs: each schedule with its last and next tick, and whether a live node declares
-- it still (one no node declares any more enqueues nothing).
SELECT s.type, s.schedule, s.last_run, s.next_run, s.last_job,
       EXISTS (SELECT 1 FROM nodes n
               WHERE n.schedules ? s.type
                 AND n.last_heartbeat > now() - make_interval(secs => %(stale_after)s)) AS active
FROM schedules s
ORDER BY s.type;
