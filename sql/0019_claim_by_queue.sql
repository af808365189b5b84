-- jobfleet schema, version 19: a node that serves some queues claims from their own jobs.
--
-- jobs_ready orders the whole backlog (priority, run_at, id). A node started with --queues
-- walked it from the top past every ready job of the queues it does not serve, at every claim:
-- a node for a small queue beside a backlog of 100k older jobs elsewhere read all of them to
-- find its own, or to find there were none. jobs_ready_by_queue holds the same order within
-- each queue, so such a claim walks each served queue's own jobs from their top and stops
-- after the batch (one walk a queue, LATERAL, each locking at most a batch), then keeps the
-- best of them in the common order: a sort of at most a batch per queue it serves. A node of
-- every queue, or of more than four (each walk locks up to a batch: the walk of the whole
-- backlog in order costs less than that many), claims from jobs_ready as before. Measured on
-- PostgreSQL 18 here: a claim of a node serving `mail` (one job ready), beside 100k older jobs
-- in `default`, took 20 ms walking jobs_ready.
CREATE INDEX jobs_ready_by_queue ON jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';

CREATE OR REPLACE FUNCTION jobfleet_claim(
    p_holder text, p_types text[], p_queues text[], p_limit integer,
    p_lease_seconds double precision
) RETURNS TABLE (
    id bigint, type text, queue text, priority integer, attempt integer,
    timeout_seconds double precision, payload jsonb, waited double precision,
    trace_context jsonb
)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_queues IS NULL OR cardinality(p_queues) > 4 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT j.id FROM jobs j
            WHERE j.state = 'queued'
              AND j.run_at <= now()
              AND j.type = ANY(p_types)
              AND (p_queues IS NULL OR j.queue = ANY(p_queues))
              AND j.queue <> ALL(ARRAY(SELECT q.name FROM queues q WHERE q.paused))
              AND j.type <> ALL(ARRAY(SELECT l.type FROM type_limits l
                                      WHERE l.max_running IS NOT NULL
                                         OR l.rate_count IS NOT NULL
                                         OR l.limit_key IS NOT NULL))
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE jobs j
        SET state = 'running',
            -- Never past what an integer holds: one row set by hand must not fail every claim.
            attempt = least(j.attempt, 2147483646) + 1,
            locked_by = p_holder,
            started_at = now(),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds),
            -- Not counted toward a limit: the writers of its outcome leave the counters alone.
            limited = false
        -- The picked rows by primary key, as an array rather than a join: joined, an analysed
        -- table made a batch of 2000 a hash join over the whole of `jobs` (a sequential scan,
        -- or with the planner settings a full walk of the primary key).
        WHERE j.id = ANY(ARRAY(SELECT p.id FROM picked p))
        -- trace_context (NULL unless the enqueuer was tracing) goes to the worker for its
        -- attempt span: one more column out of the row the UPDATE has in hand.
        RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
                  extract(epoch FROM now() - j.run_at)::float8, j.trace_context;
    ELSE
        RETURN QUERY
        WITH picked AS (
            SELECT c.id
            FROM (SELECT DISTINCT s.name FROM unnest(p_queues) AS s(name)
                  WHERE s.name <> ALL(ARRAY(SELECT q.name FROM queues q WHERE q.paused))
                 ) AS served
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at FROM jobs j
                WHERE j.state = 'queued'
                  -- The queue as a range of one value, not an equality, and first in the
                  -- order: the planner then cannot drop it from the order (as it does a column
                  -- equal to a value), so only jobs_ready_by_queue gives that order, whatever
                  -- statistics say of the queues (with one queue analysed, it walked jobs_ready).
                  AND j.queue >= served.name AND j.queue <= served.name
                  AND j.run_at <= now()
                  AND j.type = ANY(p_types)
                  AND j.type <> ALL(ARRAY(SELECT l.type FROM type_limits l
                                          WHERE l.max_running IS NOT NULL
                                             OR l.rate_count IS NOT NULL
                                             OR l.limit_key IS NOT NULL))
                ORDER BY j.queue, j.priority DESC, j.run_at, j.id
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ) AS c
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT p_limit
        )
        UPDATE jobs j
        SET state = 'running',
            attempt = least(j.attempt, 2147483646) + 1,
            locked_by = p_holder,
            started_at = now(),
            lease_expires_at = now() + make_interval(secs => p_lease_seconds),
            limited = false
        WHERE j.id = ANY(ARRAY(SELECT p.id FROM picked p))
        RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
                  extract(epoch FROM now() - j.run_at)::float8, j.trace_context;
    END IF;
END
$$;
