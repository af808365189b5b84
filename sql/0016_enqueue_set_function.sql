-- jobfleet schema, version 16: the HTTP API's set enqueue calls a function (issue 17, HTTP
-- under concurrency).
--
-- The jobs of concurrent POST /jobs requests went in by one INSERT ... SELECT FROM unnest(...)
-- sent in a pipeline of four statements: BEGIN, the transaction's timeouts (set_config, for a
-- transaction-mode pooler's sake: nothing is set on the session), the INSERT planned afresh,
-- and COMMIT. For a lone request that was most of its cost: measured on one connection, 0.50
-- ms of the client's CPU and 1.6-2.2 ms a call, against 0.24 ms and 1.0 ms for the one
-- statement in autocommit. Here the INSERT sits in a PL/pgSQL function, planned once per
-- server connection whatever pooler is in between, and the call is one statement: its own
-- transaction. What the timeouts were for, a job whose idempotency key an open transaction
-- holds waiting on it without end, `lock_timeout` bounds, set first thing in the function for
-- its transaction alone (a lock wait reads it when it begins; statement_timeout would only
-- apply to the next statement).
--
-- One row per job in the arrays' order: the new job's row, or a row of NULLs when its
-- idempotency key was taken (even by an earlier element of the same arrays).
CREATE FUNCTION jobfleet_enqueue_set(
    p_lock_timeout text,
    p_types text[], p_queues text[], p_priorities integer[], p_run_ats timestamptz[],
    p_delays double precision[], p_max_attempts integer[], p_timeouts double precision[],
    p_backoffs text[], p_backoff_seconds double precision[], p_payloads text[],
    p_idempotency_keys text[], p_trace_contexts text[]
) RETURNS SETOF jobs
LANGUAGE plpgsql AS $$
BEGIN
    IF p_lock_timeout IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout, true);
    END IF;
    RETURN QUERY
    WITH new AS MATERIALIZED (
        SELECT nextval('jobs_id_seq'::regclass) AS id, n.*
        FROM unnest(p_types, p_queues, p_priorities, p_run_ats, p_delays, p_max_attempts,
                    p_timeouts, p_backoffs, p_backoff_seconds, p_payloads, p_idempotency_keys,
                    p_trace_contexts)
             WITH ORDINALITY AS n(type, queue, priority, run_at, delay, max_attempts, timeout,
                                  backoff, backoff_seconds, payload, idempotency_key,
                                  trace_context, ord)
    ), added AS (
        INSERT INTO jobs (id, type, queue, priority, run_at, max_attempts, timeout_seconds,
                          backoff, backoff_seconds, payload, idempotency_key, trace_context,
                          limit_key)
        SELECT new.id,
               new.type,
               coalesce(new.queue, t.queue, 'default'),
               coalesce(new.priority, t.priority, 0),
               coalesce(new.run_at, now() + make_interval(secs => coalesce(new.delay, 0))),
               coalesce(new.max_attempts, t.max_attempts, 5),
               coalesce(new.timeout, t.timeout_seconds),
               coalesce(new.backoff, t.backoff),
               coalesce(new.backoff_seconds, t.backoff_seconds),
               new.payload::jsonb,
               new.idempotency_key,
               new.trace_context::jsonb,
               jobfleet_limit_key(new.payload::jsonb, l.limit_key)
        FROM new
        LEFT JOIN job_types t ON t.type = new.type
        LEFT JOIN type_limits l ON l.type = new.type
        ORDER BY new.ord
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING *
    )
    SELECT added.* FROM new LEFT JOIN added ON added.id = new.id ORDER BY new.ord;
END
$$;
