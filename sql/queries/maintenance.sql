-- The node registry and the maintenance services (supervisor/maintenance/): heartbeat, handler defaults, lease renewal, leadership, the lease reaper, the pruner, the queue gauges.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).
-- The statements that read `jobs` (lease renewal, the reaper, the pruner, the gauges) run after
-- `index_plans` (processing.sql): a table no one has analysed yet must not cost a scan of it.

-- name: upsert_node
INSERT INTO nodes (name, hostname, pid, workers, busy, queues, types, schedules)
VALUES (%(name)s, %(hostname)s, %(pid)s, %(workers)s, %(busy)s, %(queues)s, %(types)s,
        %(schedules)s)
ON CONFLICT (name) DO UPDATE
SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, workers = EXCLUDED.workers,
    busy = EXCLUDED.busy, queues = EXCLUDED.queues, types = EXCLUDED.types,
    schedules = EXCLUDED.schedules,
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

-- name: node_in_use
SELECT hostname, pid, extract(epoch FROM now() - last_heartbeat)
FROM nodes
WHERE name = %(name)s AND last_heartbeat > now() - make_interval(secs => %(stale_after)s);

-- name: renew_leases
-- One statement renews every lease this node's supervisor holds (it knows their ids), and
-- tells it which of them someone asked to cancel. A lease set in the last `fresh_seconds` is
-- left as it is (and not reported): it has nearly all its time ahead of it. Renewed, each is
-- a new version of its row (the lease is indexed): a node draining short jobs renewed every
-- job it held at each beat, most of them claimed moments before and finished moments after
-- (4,000 rows at the start of a 100k drain, on the path of its first claims). The lease is
-- read through coalesce, which no index serves: a plain range of lease_expires_at let the
-- planner walk jobs_leased (every held job of the cluster, few by the statistics of a table
-- analysed while little ran) instead of looking these ids up by key.
UPDATE jobs
SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(holder)s
  AND coalesce(lease_expires_at, now())
      < now() + make_interval(secs => %(lease_seconds)s - %(fresh_seconds)s)
RETURNING id, attempt, cancel_requested;

-- name: cancels_asked
-- Which of the jobs this node holds someone asked to cancel: the renewal's report without
-- renewing, read when the node starts to LISTEN (at its start and after a reconnection) for
-- the cancels asked while nobody listened. Each a primary-key lookup, nothing written.
SELECT id, attempt FROM jobs
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running' AND locked_by = %(holder)s
  AND cancel_requested;

-- name: reap_lost_attempts
-- The lease reaper: running jobs whose holder stopped renewing (its lease expired `overdue`
-- seconds ago), or, with `earlier_runs`, whose holder is an earlier run of the node `node`
-- (restarted under the same name), go back to the queue at once (or to dead once their
-- attempts are spent), with the attempt recorded `lost`. Safe to run from many nodes at once
-- (SKIP LOCKED, fenced). Without `earlier_runs` (false, a bound value: the plan is made for
-- it) the walk of jobs_leased stops at the first lease not yet expired; the look for earlier
-- runs reads every held job's row, as no index finds them.
WITH expired AS (
    SELECT id, locked_by, started_at
    FROM jobs
    WHERE lease_expires_at IS NOT NULL
      AND state = 'running'
      AND (lease_expires_at < now() - make_interval(secs => %(overdue)s)
           OR (%(earlier_runs)s AND split_part(locked_by, '/', 1) = %(node)s
               AND locked_by <> %(holder)s))
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), lost AS (
    UPDATE jobs j
    SET state = jobfleet_state_after_failure(
            j.cancel_requested, false, j.attempt, j.max_attempts),
        (run_at, finished_at, started_at) = (
            SELECT CASE WHEN s = 'queued' THEN now() ELSE j.run_at END,
                   CASE WHEN s = 'queued' THEN NULL ELSE now() END,
                   CASE WHEN s = 'queued' THEN NULL ELSE e.started_at END
            FROM jobfleet_state_after_failure(
                j.cancel_requested, false, j.attempt, j.max_attempts) AS s),
        error = CASE
            WHEN split_part(e.locked_by, '/', 1) = %(node)s AND e.locked_by <> %(holder)s
            THEN 'node ' || %(node)s || ' restarted: its earlier run was gone with this attempt'
            ELSE 'lease expired: node ' || split_part(e.locked_by, '/', 1)
                 || ' stopped renewing it (node died, paused or cut off)' END,
        locked_by = NULL, lease_expires_at = NULL
    FROM expired e
    WHERE j.id = e.id
    RETURNING j.id, j.type, j.queue, j.attempt, j.state, j.error, e.locked_by, e.started_at,
              j.limited, j.limit_key
), counted AS (  -- counted jobs leave `running` (see complete_batch)
    UPDATE type_finished f SET finished = f.finished + c.n
    FROM (SELECT type, count(*) AS n FROM lost WHERE limited AND limit_key IS NULL
          GROUP BY type) AS c
    WHERE f.type = c.type
), counted_keys AS (
    UPDATE key_finished f SET finished = f.finished + c.n
    FROM (SELECT type, limit_key, count(*) AS n FROM lost
          WHERE limited AND limit_key IS NOT NULL GROUP BY type, limit_key) AS c
    WHERE f.type = c.type AND f.key = c.limit_key
), logged AS (
    INSERT INTO job_attempt_log (job_id, attempt, outcome, error, node, pid, started_at,
                                 finished_at)
    SELECT id, attempt, CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE 'lost' END, error,
           split_part(locked_by, '/', 1), NULL, started_at, now()
    FROM lost
    -- An attempt recorded before (its job's attempt set back by hand, say) is overwritten by
    -- the newer outcome rather than failing the whole batch on the key.
    ON CONFLICT (job_id, attempt) DO UPDATE
    SET outcome = EXCLUDED.outcome, error = EXCLUDED.error, node = EXCLUDED.node,
        pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
), told AS (  -- idle nodes hear of the requeued ones at once
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM lost WHERE state = 'queued')
)
SELECT id, type, queue, state FROM lost LEFT JOIN told ON true;

-- name: try_leadership
-- Session-level: the leader keeps it for as long as its connection lives.
SELECT pg_try_advisory_lock(7235101, 2);

-- name: prune_unique_keys
-- Unique jobs' keys past their window (a key's row goes with its job anyway; these are the
-- keys of jobs still kept: dead ones, or any within retention). A batch at a time.
DELETE FROM unique_jobs
WHERE key IN (SELECT key FROM unique_jobs WHERE expires_at < now() LIMIT %(limit)s)
RETURNING key;

-- name: prune_finished
-- Retention: succeeded and cancelled jobs older than `keep` seconds go, oldest first, one
-- window at a time. The window is the next `limit` jobs by id after `after` (the pruner's
-- cursor): a statement reads that many rows by primary key and no more, however much history
-- there is (the first version looked for the first young job from the start of the table in
-- every batch: with 10M old jobs, a walk of all of them per batch). Dead jobs stay for the
-- dead-letter queue (`jobfleet dlq purge` removes them); their attempt rows and unique keys go
-- with their jobs (ON DELETE CASCADE). SKIP LOCKED: a finished job someone holds (a retry
-- under way) is left for the next pass, never waited for.
-- Returns how many went, the window's last id (the next `after`; NULL: the table's end), and
-- whether the window reached a job created within `keep`: ids grow with creation time and a
-- job finishes after it is created, so no job old enough to go lies beyond it (the pass ends).
WITH scanned AS (
    SELECT id, state, finished_at, created_at
    FROM jobs
    WHERE id > %(after)s
    ORDER BY id
    LIMIT %(limit)s
), doomed AS (
    SELECT id FROM jobs
    WHERE id = ANY(ARRAY(
              SELECT id FROM scanned
              WHERE state IN ('succeeded', 'cancelled')
                AND finished_at < now() - make_interval(secs => %(keep)s)))
      AND state IN ('succeeded', 'cancelled')  -- again, on the row as it is once locked
      AND finished_at < now() - make_interval(secs => %(keep)s)
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM jobs j USING doomed WHERE j.id = doomed.id
    RETURNING j.id
)
SELECT (SELECT count(*) FROM gone)::integer,
       (SELECT max(id) FROM scanned),
       EXISTS (SELECT 1 FROM scanned
               WHERE created_at >= now() - make_interval(secs => %(keep)s));

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

-- name: queues_paused_gauge
-- Every queue ever paused or resumed: 1 while paused, 0 once resumed.
SELECT name, paused::integer FROM queues ORDER BY name;

-- name: node_heartbeat_ages
SELECT name, extract(epoch FROM now() - last_heartbeat)::float8 FROM nodes;

-- name: declared_schedules
-- The periodic jobs live nodes declare, one schedule per type (the newest node's when nodes
-- disagree, as in a rolling deploy), beside the state the leader keeps for it, and the time.
SELECT d.type, d.schedule, d.payload, s.schedule, s.next_run, now()
FROM (
    SELECT DISTINCT ON (e.key) e.key AS type, e.value->>'schedule' AS schedule,
           e.value->'payload' AS payload
    FROM nodes n CROSS JOIN LATERAL jsonb_each(n.schedules) e
    WHERE n.last_heartbeat > now() - make_interval(secs => %(stale_after)s)
    ORDER BY e.key, n.started_at DESC
) d
LEFT JOIN schedules s ON s.type = d.type;

-- name: set_schedule
-- A schedule declared for the first time, or changed: its first tick is the next one.
INSERT INTO schedules (type, schedule, next_run) VALUES (%(type)s, %(schedule)s, %(next_run)s)
ON CONFLICT (type) DO UPDATE
SET schedule = EXCLUDED.schedule, next_run = EXCLUDED.next_run, updated_at = now();

-- name: advance_schedule
-- Move a due schedule on to its next tick, only if no one did (the tick `due` is still its
-- next): in the transaction that enqueues the tick's job.
UPDATE schedules SET last_run = next_run, next_run = %(next_run)s, updated_at = now()
WHERE type = %(type)s AND next_run = %(due)s
RETURNING type;

-- name: schedule_enqueued
UPDATE schedules SET last_job = %(job)s WHERE type = %(type)s;
