-- A node's hot path: claims, fenced outcomes, releases and progress (supervisor/lanes.py, outbox.py), and the looks for work an idle or burst node takes.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: index_plans
-- Runs first in the transaction of every statement of the hot path (supervisor/store.py,
-- run_pipelined: one pipeline, one transaction), and leaves the planner index paths only, for
-- that transaction alone (set_config(..., true) is SET LOCAL). The plans must not depend on
-- statistics: users bulk-enqueue and start their supervisors at once, and autovacuum analyses
-- the table a minute later, after the drain. Without statistics the planner knows how big
-- `jobs` is but nothing of its columns: it guesses 0.5 % of the rows queued, a third of those
-- ready, 0.5 % of those of each type, so "500 of the backlog in index order" looks like "all
-- of a handful of rows, then sort them". Measured on PostgreSQL 18 on a table filled by COPY
-- and never analysed: the claim became a bitmap scan of the whole backlog and an external sort
-- for every batch (100k jobs: 63 ms a claim instead of 5.6 ms; 1M: 580 ms, 39 MB sorted on
-- disk); complete_batch, once a batch reached 2000 ids of 100k jobs, the lease reaper, the
-- pruner, the queue gauges and a burst node's last look read the whole table. Each of these
-- statements has one good plan whatever the data: the claim walks jobs_ready in its order and
-- stops after the batch, the fenced writes enter by primary key, the reaper by jobs_leased.
-- Switched off, a sequential scan, a bitmap scan or a sort costs more than any such plan, so
-- the planner takes it on a fresh table as it does on an analysed one (and statistics, once
-- there, change nothing). Scoped to the transaction, so nothing else the connection runs, and
-- no query of an application sharing the database, is affected.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_sort', 'off', true);

-- name: generic_index_plans
-- `index_plans`, and the prepared statements that follow run on their generic plan: the claims
-- (supervisor/store.py), whose one plan suits every call, are planned once per connection
-- instead of at every claim (most of an idle node's claim was its planning).
-- The claims' commit does not wait for its WAL flush (synchronous_commit off, for this
-- transaction only): that wait was a third of an idle node's claim, on the path of every job
-- from enqueue to start (issue 17), and longer still while other work flushes. What a claim
-- lost in a database crash (acknowledged, not yet flushed: at most about three
-- wal_writer_delay) leaves behind: its jobs queued, as they were, and its limit counters with
-- them (one transaction, so it is all or nothing); they run again (at least once, as after any
-- crash). The attempt the node started meanwhile cannot finish the job: every outcome is
-- fenced on the attempt and on the claim's holder (complete_batch), so even when the job is
-- claimed again under the same attempt number its first run's outcome is dropped, and a
-- transactional handler's writes roll back with its fenced completion. Any later synchronous
-- commit (an outcome, a lease renewal) flushes the claim with it.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_sort', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('synchronous_commit', 'off', true);

-- name: claim
-- One statement claims a batch of the node's unlimited types: the ready jobs it may run, best
-- first, skipping rows another claimer holds, each under a new attempt and a fresh lease. The
-- UPDATE is in jobfleet_claim (schema.sql), which carries the planner settings and the commit
-- mode of generic_index_plans itself, so a round of plain claims needs no statement of
-- settings before it, and a lone claim (an idle node's) is sent on its own, not in a pipeline
-- (store.py, run_claims): one statement less on the path of each job an idle node starts.
SELECT * FROM jobfleet_claim(%(node)s::text, %(types)s::text[], %(queues)s::text[],
                             %(limit)s::integer, %(lease_seconds)s::float8);

-- name: claim_lone
-- `claim` as a lane sends it alone (an idle node's claim): prepared once per connection and
-- run on libpq itself, its parameters in order (supervisor/lone_claim.py).
SELECT * FROM jobfleet_claim($1::text, $2::text[], $3::text[], $4::integer, $5::float8);

-- name: claim_limited
-- A claim of one type with limits (type_limits), exact across nodes: it locks the type's row
-- first (claimers of the type take turns: one row lock per batch), takes no more than
-- max_running less what runs and the rate less the starts in the last period allow, claims
-- those in the order and with the exclusions of `claim`, and counts them on the row, all in
-- this statement. What runs is `claimed` (the locked row, as the last claimer left it) less
-- `finished` (written by outcomes without this lock, read as of this statement's snapshot:
-- it can only be behind, so the count can only be over, never under). The claim's time is
-- read after the lock (and never before the last one logged), and is the jobs' `started_at`.
WITH lim AS (
    SELECT l.max_running, l.rate_count, l.rate_seconds, l.rate_log,
           l.claimed - coalesce((SELECT f.finished FROM type_finished f WHERE f.type = l.type),
                                0) AS running,
           greatest(extract(epoch FROM clock_timestamp())::float8,
                    coalesce(l.rate_log[array_length(l.rate_log, 1) - 1], 0)) AS at
    FROM type_limits l
    WHERE l.type = %(type)s AND l.limit_key IS NULL  -- keyed: claim_keyed
    FOR UPDATE
), allowed AS (
    SELECT greatest(0, least(
               %(limit)s,
               coalesce(max_running - running, %(limit)s),
               coalesce(rate_count - jobfleet_rate_used(rate_log, at, rate_seconds),
                        %(limit)s))) AS n,
           at
    FROM lim
), picked AS (
    SELECT id FROM jobs
    WHERE state = 'queued'
      AND run_at <= now()
      AND type = %(type)s
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      AND queue <> ALL(ARRAY(SELECT name FROM queues WHERE paused))
    ORDER BY priority DESC, run_at, id
    -- No row (the limits were deleted by hand): nothing, rather than no limit.
    LIMIT coalesce((SELECT n FROM allowed), 0)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs j
    SET state = 'running',
        attempt = least(j.attempt, 2147483646) + 1,
        locked_by = %(node)s,
        started_at = to_timestamp((SELECT at FROM allowed)),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        -- It counts for its type, not for a key (a key computed before the type's limit key
        -- was removed).
        limited = true, limit_key = NULL
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
              extract(epoch FROM now() - j.run_at)::float8 AS waited, j.trace_context
), counted AS (
    UPDATE type_limits l
    SET claimed = l.claimed + c.n,
        rate_log = CASE WHEN l.rate_seconds IS NULL THEN '{}'
                        ELSE jobfleet_rate_logged(l.rate_log, a.at, l.rate_seconds, c.n) END
    FROM (SELECT count(*) AS n FROM claimed) AS c, allowed AS a
    WHERE l.type = %(type)s AND c.n > 0
)
SELECT * FROM claimed;

-- name: lock_keyed_type
-- A claim of a type with a limit key runs in two statements: this one locks the type's row
-- (claimers of the type take turns across the cluster: one row lock per batch), and
-- claim_keyed, run next in the same transaction, takes its snapshot after the lock, so it
-- reads every key's counters as the last claimer of the type left them.
SELECT type FROM type_limits WHERE type = %(type)s AND limit_key IS NOT NULL FOR UPDATE;

-- name: claim_keyed
-- A claim of a type with a limit key, in turns (after lock_keyed_type). It walks the keys with
-- queued jobs from the one after `turn` (where the last claim stopped), wrapping around, up to
-- `keys` keys (one per job wanted, at most TURN_KEYS: supervisor/store.py): a loose scan of
-- jobs_keyed, one index descent per key, never the backlog. Each key walked gets an equal share of the batch (the first ones one more when it
-- does not divide), no more than its own max_running less what it runs and its rate less the
-- starts in its window allow, taken in the key's pickup order with the exclusions of `claim`.
-- Claimed jobs count for their key (key_limits, key_finished: a row each, made by the first
-- claim of the key); the turn moves on to the last key walked. With no max_running nor rate
-- (turns alone), nothing is counted. No row in lock_keyed_type's sense (the key or the limits
-- were removed): nothing is claimed.
WITH RECURSIVE lim AS (
    SELECT l.max_running, l.rate_count, l.rate_seconds, coalesce(l.turn, '') AS turn,
           l.max_running IS NOT NULL OR l.rate_count IS NOT NULL AS counts,
           extract(epoch FROM clock_timestamp())::float8 AS at
    FROM type_limits l
    WHERE l.type = %(type)s AND l.limit_key IS NOT NULL
), ahead(key, n) AS (  -- the keys after the turn, in order
    (SELECT j.limit_key, 1 FROM jobs j
     WHERE j.state = 'queued' AND j.limit_key IS NOT NULL AND j.type = %(type)s
       AND j.limit_key > (SELECT turn FROM lim)
     ORDER BY j.limit_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.limit_key FROM jobs j
            WHERE j.state = 'queued' AND j.limit_key IS NOT NULL AND j.type = %(type)s
              AND j.limit_key > a.key
            ORDER BY j.limit_key LIMIT 1),
           a.n + 1
    FROM ahead a WHERE a.key IS NOT NULL AND a.n < %(keys)s
), behind(key, n) AS (  -- then from the first key up to the turn
    (SELECT j.limit_key, 1 FROM jobs j
     WHERE j.state = 'queued' AND j.limit_key IS NOT NULL AND j.type = %(type)s
       AND j.limit_key >= ''
     ORDER BY j.limit_key LIMIT 1)
    UNION ALL
    SELECT (SELECT j.limit_key FROM jobs j
            WHERE j.state = 'queued' AND j.limit_key IS NOT NULL AND j.type = %(type)s
              AND j.limit_key > b.key
            ORDER BY j.limit_key LIMIT 1),
           b.n + 1
    FROM behind b
    WHERE b.key IS NOT NULL AND b.key < (SELECT turn FROM lim) AND b.n < %(keys)s
), walked AS (
    SELECT key, n AS ord FROM ahead WHERE key IS NOT NULL
    UNION ALL
    SELECT key, n + (SELECT count(*) FROM ahead WHERE key IS NOT NULL) FROM behind
    WHERE key IS NOT NULL AND key <= (SELECT turn FROM lim)
    LIMIT %(keys)s
), keys AS (
    SELECT w.key, w.ord, k.rate_log, f.finished IS NULL AS new,
           coalesce(k.claimed, 0) - coalesce(f.finished, 0) AS running
    FROM walked w
    LEFT JOIN key_limits k ON k.type = %(type)s AND k.key = w.key
    LEFT JOIN key_finished f ON f.type = %(type)s AND f.key = w.key
), allowed AS (
    SELECT k.key, k.ord, k.rate_log, k.new,
           greatest(0, least(
               %(limit)s / m.n + CASE WHEN k.ord <= %(limit)s %% m.n THEN 1 ELSE 0 END,
               coalesce(lim.max_running - k.running, %(limit)s),
               coalesce(lim.rate_count
                        - jobfleet_rate_used(k.rate_log, lim.at, lim.rate_seconds), %(limit)s)
           )) AS n,
           greatest(lim.at, coalesce(k.rate_log[array_length(k.rate_log, 1) - 1], 0)) AS at
    FROM keys k, lim, (SELECT count(*) AS n FROM walked) AS m
), picked AS (
    -- Each job's turn: its rank among its key's jobs, then its key's place in the walk.
    SELECT p.id, p.rank, a.ord FROM allowed a
    CROSS JOIN LATERAL (
        SELECT t.id, row_number() OVER () AS rank FROM (  -- (no window beside FOR UPDATE)
            SELECT j.id FROM jobs j
            WHERE j.state = 'queued' AND j.limit_key IS NOT NULL AND j.type = %(type)s
              AND j.limit_key = a.key
              AND j.run_at <= now()
              AND (%(queues)s::text[] IS NULL OR j.queue = ANY(%(queues)s::text[]))
              AND j.queue <> ALL(ARRAY(SELECT name FROM queues WHERE paused))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT a.n
            FOR UPDATE SKIP LOCKED
        ) AS t
    ) AS p
    WHERE a.n > 0
), claimed AS (
    UPDATE jobs j
    SET state = 'running',
        attempt = least(j.attempt, 2147483646) + 1,
        locked_by = %(node)s,
        started_at = to_timestamp((SELECT at FROM lim)),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        limited = (SELECT counts FROM lim)
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
              extract(epoch FROM now() - j.run_at)::float8 AS waited, j.trace_context,
              j.limit_key
), per_key AS (
    SELECT c.limit_key AS key, count(*) AS n FROM claimed c GROUP BY c.limit_key
), counted AS (
    INSERT INTO key_limits AS k (type, key, claimed, rate_log)
    SELECT %(type)s, p.key, p.n,
           CASE WHEN lim.rate_seconds IS NULL THEN '{}'
                ELSE jobfleet_rate_logged(coalesce(a.rate_log, '{}'), a.at, lim.rate_seconds,
                                          p.n) END
    FROM per_key p JOIN allowed a ON a.key = p.key, lim
    WHERE lim.counts
    ON CONFLICT (type, key) DO UPDATE
    SET claimed = k.claimed + EXCLUDED.claimed, rate_log = EXCLUDED.rate_log
), finishing AS (  -- the key's other counter, for the outcome writers
    INSERT INTO key_finished (type, key)
    SELECT %(type)s, a.key FROM allowed a, lim
    WHERE a.new AND lim.counts AND a.key IN (SELECT key FROM per_key)
    ON CONFLICT DO NOTHING
), turned AS (
    UPDATE type_limits l SET turn = w.key
    FROM walked w
    WHERE l.type = %(type)s
      -- Every key walked (fewer than the walk may take): start one further next time, else the first
      -- keys would always get the larger shares.
      AND w.ord = CASE WHEN (SELECT count(*) FROM walked) < %(keys)s THEN 1
                       ELSE (SELECT max(ord) FROM walked) END
)
-- With each job's turn (rank, key's place), for the node to hand them out in turns: the
-- first job of each key, then the second of each, ... (a key's jobs are not all dealt before
-- the next key's first). Sorted by the node: a sort here is what the plan test forbids.
SELECT c.id, c.type, c.queue, c.priority, c.attempt, c.timeout_seconds, c.payload, c.waited,
       c.trace_context, p.rank, p.ord
FROM claimed c JOIN picked p ON p.id = c.id;

-- name: limit_state
-- Run after claim_limited, in its transaction: the type's limits and counts as that claim left
-- them, and the database's clock, for the node to decide whether to hold the type back
-- (common/type_limits.py, hold_seconds). No row: the limits are gone, or the limit key was
-- set or removed (`keyed`: the node claimed the type with claim_keyed): read them again.
SELECT l.max_running, l.claimed - coalesce(f.finished, 0), l.rate_count, l.rate_seconds,
       l.rate_log, extract(epoch FROM clock_timestamp())::float8
FROM type_limits l LEFT JOIN type_finished f ON f.type = l.type
WHERE l.type = %(type)s AND (l.limit_key IS NOT NULL) = %(keyed)s
  AND (l.max_running IS NOT NULL OR l.rate_count IS NOT NULL OR l.limit_key IS NOT NULL);

-- name: node_limits
-- Which of a node's types have a limit or a limit key in force, and what they are: the node
-- claims each of them apart (claim_limited, or claim_keyed with a key). Read at start, when
-- told ('limits' on jobfleet_jobs) and at each heartbeat.
SELECT type, max_running, rate_count, rate_seconds, limit_key FROM type_limits
WHERE type = ANY(%(types)s::text[])
  AND (max_running IS NOT NULL OR rate_count IS NOT NULL OR limit_key IS NOT NULL)
ORDER BY type;

-- name: complete_batch
-- Fenced: only the attempt that still holds the job (same attempt, still running, and held by
-- the writer's `holder`, the locked_by of its claim) may finish it. Rows that do not match are
-- late results of a replaced attempt and are dropped. The holder matters after a database
-- crash: a claim is committed without waiting for its WAL flush (generic_index_plans), so one
-- acknowledged in the last moments before a crash may be gone after it, and the job claimed
-- again under the same attempt number by another holder; the first holder's outcome must not
-- finish that attempt. (NULL holder: the attempt alone, for tests and tools that claim by
-- hand.) The
-- successful attempt is recorded on the job row itself (see the job_attempts view).
-- The batch travels as comma-separated numbers and one JSON array of results: PostgreSQL
-- parses those in C, where building array literals costs the supervisor a third of its time.
-- The planner: `j.id = ANY(...)` makes the primary key the way in, and the fence compares the
-- state with a column of the batch (`d.must_be`, behind OFFSET 0) rather than a constant:
-- statistics gathered while nothing ran put `state = 'running'` at one row, and the planner
-- then joined the batch to it by nested loop (O(batch^2): 470 ms for 2000 jobs).
WITH done AS (
UPDATE jobs j
SET state = 'succeeded', result = d.result, error = NULL,
    started_at = to_timestamp(d.started / 1e6), finished_at = to_timestamp(d.finished / 1e6),
    attempt_node = %(node)s, attempt_pid = d.pid, locked_by = NULL, lease_expires_at = NULL
FROM (
    SELECT u.id, u.attempt, u.pid, u.started, u.finished, r.results -> (u.n::integer - 1) AS result,
           'running'::text AS must_be, %(holder)s::text AS held_by
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
  AND (d.held_by IS NULL OR j.locked_by = d.held_by)
-- The type only for a counted job: unlimited ones carry a NULL through the CTE, not a copy
-- of their type's name.
RETURNING j.id, CASE WHEN j.limited THEN j.type END AS limited_type,
          CASE WHEN j.limited THEN j.limit_key END AS limited_key
), counted AS (
    -- Jobs claimed under their type's limits leave `running`: one UPDATE per type in the
    -- batch, nothing at all for types without limits.
    UPDATE type_finished f SET finished = f.finished + c.n
    FROM (SELECT limited_type, count(*) AS n FROM done
          WHERE limited_type IS NOT NULL AND limited_key IS NULL
          GROUP BY limited_type) AS c
    WHERE f.type = c.limited_type
), counted_keys AS (  -- and those counted for their key (claim_keyed): one UPDATE per key
    UPDATE key_finished f SET finished = f.finished + c.n
    FROM (SELECT limited_type, limited_key, count(*) AS n FROM done
          WHERE limited_key IS NOT NULL GROUP BY limited_type, limited_key) AS c
    WHERE f.type = c.limited_type AND f.key = c.limited_key
)
SELECT id FROM done;

-- name: fail_batch
-- Fenced like complete_batch (the attempt, running, and its holder). A failed attempt goes back to `queued` after its backoff, or to
-- `dead` once its attempts are spent or the failure is final; a job whose cancellation was
-- requested ends `cancelled` instead of retrying.
WITH failed AS (
    UPDATE jobs j
    SET state = jobfleet_state_after_failure(
            j.cancel_requested OR d.outcome = 'cancelled', d.final, j.attempt, j.max_attempts),
        run_at = CASE WHEN jobfleet_state_after_failure(
                j.cancel_requested OR d.outcome = 'cancelled', d.final, j.attempt,
                j.max_attempts) = 'queued'
            THEN now() + make_interval(secs => jobfleet_backoff_seconds(
                coalesce(j.backoff, d.backoff), j.attempt,
                coalesce(j.backoff_seconds, d.backoff_seconds, %(backoff_base)s),
                %(backoff_max)s))
            ELSE j.run_at END,
        -- A finished job keeps its last attempt's start; a queued one has none yet.
        (finished_at, started_at) = (
            SELECT CASE WHEN s = 'queued' THEN NULL ELSE now() END,
                   CASE WHEN s = 'queued' THEN NULL ELSE d.started_at END
            FROM jobfleet_state_after_failure(
                j.cancel_requested OR d.outcome = 'cancelled', d.final, j.attempt,
                j.max_attempts) AS s),
        error = d.error, locked_by = NULL, lease_expires_at = NULL
    FROM (
        SELECT u.*, 'running'::text AS must_be, %(holder)s::text AS held_by
        FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(outcomes)s::text[],
                    %(errors)s::text[], %(finals)s::boolean[], %(backoffs)s::text[],
                    %(backoff_seconds)s::double precision[], %(pids)s::integer[],
                    %(started)s::timestamptz[], %(finished)s::timestamptz[])
             AS u(id, attempt, outcome, error, final, backoff, backoff_seconds, pid, started_at,
                  finished_at)
        OFFSET 0
    ) AS d
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
      AND j.state = d.must_be AND (d.held_by IS NULL OR j.locked_by = d.held_by)
    RETURNING j.id, j.type, j.queue, j.attempt, j.state, d.outcome, d.error, d.pid,
              d.started_at, d.finished_at, j.run_at, j.limited, j.limit_key
), counted AS (  -- counted jobs leave `running` (see complete_batch)
    UPDATE type_finished f SET finished = f.finished + c.n
    FROM (SELECT type, count(*) AS n FROM failed WHERE limited AND limit_key IS NULL
          GROUP BY type) AS c
    WHERE f.type = c.type
), counted_keys AS (
    UPDATE key_finished f SET finished = f.finished + c.n
    FROM (SELECT type, limit_key, count(*) AS n FROM failed
          WHERE limited AND limit_key IS NOT NULL GROUP BY type, limit_key) AS c
    WHERE f.type = c.type AND f.key = c.limit_key
), logged AS (
    INSERT INTO job_attempt_log (job_id, attempt, outcome, error, node, pid, started_at,
                                 finished_at)
    SELECT id, attempt, CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE outcome END, error,
           %(node)s, pid, started_at, finished_at
    FROM failed
    -- An attempt recorded before (its job's attempt set back by hand, say) is overwritten by
    -- the newer outcome rather than failing the whole batch on the key.
    ON CONFLICT (job_id, attempt) DO UPDATE
    SET outcome = EXCLUDED.outcome, error = EXCLUDED.error, node = EXCLUDED.node,
        pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
)
-- What became of each (for the metrics): back in the queue, dead or cancelled; and, for a
-- retry, how many seconds until it falls due (the node that failed it claims it then).
SELECT id, type, queue, state, outcome,
       CASE WHEN state = 'queued' THEN extract(epoch FROM run_at - now())::float8 END
FROM failed;

-- name: release_batch
-- Claimed but never started (shutdown): back to the queue without spending an attempt; idle
-- nodes are told. Fenced like complete_batch.
WITH released AS (
    UPDATE jobs j
    SET state = 'queued', attempt = j.attempt - 1, locked_by = NULL, lease_expires_at = NULL,
        started_at = NULL
    FROM (
        SELECT u.*, 'running'::text AS must_be, %(holder)s::text AS held_by
        FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS u(id, attempt)
        OFFSET 0
    ) AS d
    WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
      AND j.state = d.must_be AND (d.held_by IS NULL OR j.locked_by = d.held_by)
    RETURNING j.id, j.type, j.limited, j.limit_key
), counted AS (  -- counted jobs leave `running` (see complete_batch)
    UPDATE type_finished f SET finished = f.finished + c.n
    FROM (SELECT type, count(*) AS n FROM released WHERE limited AND limit_key IS NULL
          GROUP BY type) AS c
    WHERE f.type = c.type
), counted_keys AS (
    UPDATE key_finished f SET finished = f.finished + c.n
    FROM (SELECT type, limit_key, count(*) AS n FROM released
          WHERE limited AND limit_key IS NOT NULL GROUP BY type, limit_key) AS c
    WHERE f.type = c.type AND f.key = c.limit_key
), told AS (
    SELECT pg_notify('jobfleet_jobs', '') WHERE EXISTS (SELECT 1 FROM released)
)
SELECT id FROM released LEFT JOIN told ON true;

-- name: save_progress
-- Last value wins; only the attempt that holds the job (and its holder) may report.
UPDATE jobs j
SET progress = jsonb_build_object('fraction', d.fraction, 'message', d.message)
FROM (
    SELECT u.*, 'running'::text AS must_be, %(holder)s::text AS held_by
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[],
                %(fractions)s::double precision[], %(messages)s::text[])
         AS u(id, attempt, fraction, message)
    OFFSET 0
) AS d
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
  AND j.state = d.must_be AND (d.held_by IS NULL OR j.locked_by = d.held_by);

-- name: soonest_scheduled
-- Seconds until the soonest job this node could run that is queued for later (NULL: none).
-- Asked when the node's claims come back empty, so the ready part of the queue is empty and
-- the scan covers scheduled jobs only.
SELECT extract(epoch FROM min(run_at) - clock_timestamp())::float8
FROM jobs
WHERE state = 'queued' AND run_at > now()
  AND type = ANY(%(types)s::text[])
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND queue <> ALL(ARRAY(SELECT name FROM queues WHERE paused));

-- name: database_clock
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: burst_nothing_elsewhere
-- What keeps a --burst supervisor alive besides its own jobs: one it could run that is ready
-- (in a queue not paused), or running under another holder (it may fail and come back). Each
-- half walks its partial index and stops at the first row; the ORDER BY keeps the planner on
-- jobs_ready even when its statistics still count the backlog a drain has just emptied.
-- Jobs run under another holder only where another node is registered (a node's row is there
-- from before its first claim until it stops, its jobs ended or handed back; this node's own
-- earlier runs were reaped at its start): without one, the second half is not walked. It reads
-- jobs_leased, where every claim of the drain left an entry that no other scan clears (the
-- reaper's stops at the first unexpired lease): on a 100k drain just ended, 20-40 ms of a
-- core, run while the last jobs ran and their outcomes waited for the CPU.
SELECT (SELECT id FROM jobs
        WHERE state = 'queued' AND run_at <= now()
          AND type = ANY(%(types)s::text[])
          AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
          AND queue <> ALL(ARRAY(SELECT name FROM queues WHERE paused))
        ORDER BY priority DESC, run_at, id
        LIMIT 1) IS NULL
   AND (NOT EXISTS (SELECT 1 FROM nodes WHERE name <> %(name)s)
        OR (SELECT id FROM jobs
            WHERE lease_expires_at IS NOT NULL AND state = 'running' AND locked_by <> %(holder)s
              AND type = ANY(%(types)s::text[])
              AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
            LIMIT 1) IS NULL);
