-- jobfleet schema, version 18: a node's plain claim is one statement, a function that carries
-- its own planner settings (issue 17, idle latency).
--
-- The claim ran in a pipeline after a statement of settings for its transaction: planner
-- settings that keep its plan on jobs_ready whatever the statistics say, its generic plan, and
-- a commit that does not wait for its flush (processing.sql, generic_index_plans, says why
-- each). Measured on one connection with one job ready, the pipeline took 0.34-0.37 ms a claim
-- and the claim alone 0.26 ms: on the path of every job an idle node starts. Here the claim is
-- a PL/pgSQL function, so the call is one statement. Its SET clauses hold the planner settings
-- for the call (PL/pgSQL plans the UPDATE inside under them, once per connection: a generic
-- plan, and again under them if an ANALYZE or a DDL invalidates it); the commit mode is set in
-- the body, for the transaction, as set_config(..., true) inside a function lasts until the
-- transaction ends (only settings named in a SET clause are restored when the function
-- returns). Claims of limited types stay statements in the pipeline.
--
-- The claim: the ready jobs this node may run (not in a paused queue: read from `queues` by
-- the claim itself, so a pause holds from the moment it commits), best first, skipping rows
-- another claimer holds. Each claim starts a new attempt under a fresh lease. Types with a
-- limit or a limit key in force are left to claim_limited and claim_keyed, read from
-- `type_limits` here as the paused queues are, so a limit set at run time holds for every
-- claim that begins after it commits, whatever the nodes knew of it.
CREATE FUNCTION jobfleet_claim(
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
    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM jobs j
        WHERE j.state = 'queued'
          AND j.run_at <= now()
          AND j.type = ANY(p_types)
          AND (p_queues IS NULL OR j.queue = ANY(p_queues))
          AND j.queue <> ALL(ARRAY(SELECT q.name FROM queues q WHERE q.paused))
          AND j.type <> ALL(ARRAY(SELECT l.type FROM type_limits l
                                  WHERE l.max_running IS NOT NULL OR l.rate_count IS NOT NULL
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
    -- table made a batch of 2000 a hash join over the whole of `jobs` (a sequential scan, or
    -- with the planner settings a full walk of the primary key).
    WHERE j.id = ANY(ARRAY(SELECT p.id FROM picked p))
    -- trace_context (NULL unless the enqueuer was tracing) goes to the worker for its attempt
    -- span: one more column out of the row the UPDATE has in hand, nothing more to read.
    RETURNING j.id, j.type, j.queue, j.priority, j.attempt, j.timeout_seconds, j.payload,
              extract(epoch FROM now() - j.run_at)::float8, j.trace_context;
END
$$;
