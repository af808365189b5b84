-- Putting jobs in the queue, in the caller's transaction (jobfleet.enqueue).
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: enqueue
-- Options the caller left out (NULL) fall back to the type's registered defaults, then to the
-- table's. trace_context is the caller's checked W3C trace context (JSON text) or NULL. A type
-- with a limit key gets the job's key (jobfleet_limit_key: never an error, whatever the
-- payload). The INSERT is in jobfleet_enqueue (schema.sql), where PL/pgSQL keeps its plan for
-- the server connection's life: this statement, planned at every call, is a bare function
-- call. Its one row holds the new id, or NULL when the idempotency key was taken (nothing
-- inserted; jobfleet.enqueue.added_id).
SELECT jobfleet_enqueue(
    %(type)s::text, %(queue)s::text, %(priority)s::integer, %(run_at)s::timestamptz,
    %(delay)s::double precision, %(max_attempts)s::integer, %(timeout)s::double precision,
    %(backoff)s::text, %(backoff_seconds)s::double precision, %(payload)s::jsonb,
    %(idempotency_key)s::text, %(trace_context)s::jsonb);

-- name: enqueue_set
-- `enqueue` for many jobs in one statement (the HTTP API's concurrent requests, and
-- POST /jobs:batch): one job per element of the arrays, answered in their order, in
-- `job_by_id`'s columns; a row of NULLs for a job whose idempotency key was taken (even by an
-- earlier element of the same arrays). The INSERT is in jobfleet_enqueue_set, planned once
-- per server connection; `lock_timeout` (milliseconds as text, NULL: the session's) bounds a
-- wait on a key an open transaction holds, for the statement's transaction alone. Jobs with
-- unique_for take `enqueue_unique`, one at a time.
SELECT id, type, queue, state, priority, attempt, max_attempts, run_at, created_at,
       started_at, finished_at, timeout_seconds, backoff, backoff_seconds, payload, result,
       error, progress, idempotency_key, cancel_requested, locked_by, lease_expires_at,
       attempt_node
FROM jobfleet_enqueue_set(%(lock_timeout)s, %(types)s::text[], %(queues)s::text[],
                          %(priorities)s::integer[], %(run_ats)s::timestamptz[],
                          %(delays)s::double precision[], %(max_attempts)s::integer[],
                          %(timeouts)s::double precision[], %(backoffs)s::text[],
                          %(backoff_seconds)s::double precision[], %(payloads)s::text[],
                          %(idempotency_keys)s::text[], %(trace_contexts)s::text[])
     WITH ORDINALITY AS added
ORDER BY added.ordinality;

-- name: enqueue_unique
-- `enqueue` with unique_for (and no idempotency key, which names its job for good and so
-- decides alone): the job is added only if its key, the type and a digest of the payload as
-- jsonb prints it (one order of keys, one spacing), holds no job that has not expired; the key
-- then names this job for `unique_for` seconds. Concurrent enqueues of one key wait on the
-- key's row, not on each other's queues. No row: the key is held (read it with
-- unique_job_by_key, in a statement of its own, so that a holder committed while this one
-- waited is seen).
WITH key AS (
    SELECT %(type)s || ':' || encode(sha256(convert_to((%(payload)s::jsonb)::text, 'UTF8')),
                                     'hex') AS key
), held AS (
    INSERT INTO unique_jobs (key, job_id, expires_at)
    SELECT key, nextval('jobs_id_seq'::regclass), now() + make_interval(secs => %(unique_for)s)
    FROM key
    ON CONFLICT (key) DO UPDATE
    SET job_id = EXCLUDED.job_id, expires_at = EXCLUDED.expires_at
    WHERE unique_jobs.expires_at <= now()
    RETURNING job_id
)
INSERT INTO jobs (id, type, queue, priority, run_at, max_attempts, timeout_seconds, backoff,
                  backoff_seconds, payload, idempotency_key, trace_context, limit_key)
SELECT held.job_id,
       %(type)s,
       coalesce(%(queue)s, t.queue, 'default'),
       coalesce(%(priority)s, t.priority, 0),
       coalesce(%(run_at)s, now() + make_interval(secs => coalesce(%(delay)s, 0))),
       coalesce(%(max_attempts)s, t.max_attempts, 5),
       coalesce(%(timeout)s, t.timeout_seconds),
       coalesce(%(backoff)s, t.backoff),
       coalesce(%(backoff_seconds)s, t.backoff_seconds),
       %(payload)s::jsonb,
       %(idempotency_key)s,
       %(trace_context)s::jsonb,
       jobfleet_limit_key(%(payload)s::jsonb, l.limit_key)
FROM held
LEFT JOIN job_types t ON t.type = %(type)s
LEFT JOIN type_limits l ON l.type = %(type)s
RETURNING id;

-- name: unique_job_by_key
SELECT job_id FROM unique_jobs
WHERE key = %(type)s || ':' || encode(sha256(convert_to((%(payload)s::jsonb)::text, 'UTF8')),
                                      'hex');

-- name: job_id_by_idempotency_key
SELECT id FROM jobs WHERE idempotency_key = %(key)s;

-- name: type_defaults
-- The type's defaults, and its limit key field (NULL: none): enqueue_many then keys the rows
-- it copied (key_copied_jobs).
SELECT t.queue, t.priority, t.max_attempts, t.timeout_seconds, t.backoff, t.backoff_seconds,
       l.limit_key
FROM (SELECT 1) AS one
LEFT JOIN job_types t ON t.type = %(type)s
LEFT JOIN type_limits l ON l.type = %(type)s;

-- name: copy_keyed_jobs
-- A type with a limit key: each job's key too, computed by the enqueuer as jobfleet_limit_key
-- would (jobfleet.limit_keys), or NULL where only the database can tell (key_copied_jobs).
COPY jobs (id, type, queue, priority, run_at, max_attempts, timeout_seconds, backoff,
           backoff_seconds, trace_context, payload, limit_key) FROM STDIN;

-- name: key_copied_jobs
-- COPY cannot compute a column: the jobs enqueue_many copied whose key only the database can
-- tell (a float: its numeric's own spelling) get it here, with the field in force now.
UPDATE jobs
SET limit_key = jobfleet_limit_key(
        payload, (SELECT limit_key FROM type_limits WHERE type = %(type)s))
WHERE id = ANY(%(ids)s::bigint[]);

-- name: reserve_job_ids
-- enqueue_many COPYs rows with ids taken here, so it can return them in payload order.
-- One row (an array), not one row per id: fetching 100k rows cost a tenth of a second. The
-- sequence is named as a constant: looked up by pg_get_serial_sequence() it was resolved
-- once per id (0.2 s for 100k, against 0.03 s).
SELECT array_agg(nextval('jobs_id_seq'::regclass) ORDER BY g)
FROM generate_series(1, %(n)s) AS g;

-- name: copy_jobs
COPY jobs (id, type, queue, priority, run_at, max_attempts, timeout_seconds, backoff,
           backoff_seconds, trace_context, payload) FROM STDIN;

-- name: db_now
SELECT now();
