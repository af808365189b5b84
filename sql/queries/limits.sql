-- Limits per job type (0009_type_limits.sql): what nodes publish from their handlers, what
-- `jobfleet types set` changes at run time, the list, and the recount that keeps the counters
-- true. The claims and the outcome writers that keep them are in processing.sql.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: publish_type_limits
-- A starting node publishes its handler's declared limits (NULL: none). A limit set at run time
-- (`*_set`) stays in force; the others follow the declaration. Nodes are told when something
-- changed ('limits' on jobfleet_jobs), and each type gets its type_finished row here, once.
WITH published AS (
    INSERT INTO type_limits AS l (type, max_running, rate_count, rate_seconds,
                                  declared_max_running, declared_rate_count,
                                  declared_rate_seconds)
    VALUES (%(type)s, %(max_running)s, %(rate_count)s, %(rate_seconds)s, %(max_running)s,
            %(rate_count)s, %(rate_seconds)s)
    ON CONFLICT (type) DO UPDATE
    SET declared_max_running = EXCLUDED.declared_max_running,
        declared_rate_count = EXCLUDED.declared_rate_count,
        declared_rate_seconds = EXCLUDED.declared_rate_seconds,
        max_running = CASE WHEN l.max_running_set THEN l.max_running
                           ELSE EXCLUDED.declared_max_running END,
        rate_count = CASE WHEN l.rate_set THEN l.rate_count ELSE EXCLUDED.declared_rate_count END,
        rate_seconds = CASE WHEN l.rate_set THEN l.rate_seconds
                            ELSE EXCLUDED.declared_rate_seconds END,
        updated_at = now()
    WHERE (l.declared_max_running, l.declared_rate_count, l.declared_rate_seconds)
          IS DISTINCT FROM
          (EXCLUDED.declared_max_running, EXCLUDED.declared_rate_count,
           EXCLUDED.declared_rate_seconds)
    RETURNING l.type, l.max_running, l.rate_count
), finished AS (
    INSERT INTO type_finished (type) SELECT type FROM published ON CONFLICT DO NOTHING
), told AS (
    SELECT pg_notify('jobfleet_jobs', 'limits') WHERE EXISTS (SELECT 1 FROM published)
)
SELECT type, max_running IS NOT NULL OR rate_count IS NOT NULL
FROM published LEFT JOIN told ON true;

-- name: set_type_limits
-- `jobfleet types set`: each limit is 'keep' (unchanged), 'set' (to the value given, NULL for
-- none: wins over the declaration) or 'default' (back to the declaration). The row is locked
-- until the transaction ends, so the recount that follows (limit_recount) sees no claim of
-- the type between.
WITH changed AS (
    INSERT INTO type_limits AS l (type, max_running, rate_count, rate_seconds,
                                  max_running_set, rate_set)
    VALUES (%(type)s,
            CASE WHEN %(max_action)s = 'set' THEN %(max_running)s::integer END,
            CASE WHEN %(rate_action)s = 'set' THEN %(rate_count)s::integer END,
            CASE WHEN %(rate_action)s = 'set' THEN %(rate_seconds)s::integer END,
            %(max_action)s = 'set', %(rate_action)s = 'set')
    ON CONFLICT (type) DO UPDATE
    SET max_running = CASE %(max_action)s WHEN 'set' THEN %(max_running)s::integer
                                          WHEN 'default' THEN l.declared_max_running
                                          ELSE l.max_running END,
        max_running_set = CASE %(max_action)s WHEN 'set' THEN true WHEN 'default' THEN false
                                              ELSE l.max_running_set END,
        rate_count = CASE %(rate_action)s WHEN 'set' THEN %(rate_count)s::integer
                                          WHEN 'default' THEN l.declared_rate_count
                                          ELSE l.rate_count END,
        rate_seconds = CASE %(rate_action)s WHEN 'set' THEN %(rate_seconds)s::integer
                                            WHEN 'default' THEN l.declared_rate_seconds
                                            ELSE l.rate_seconds END,
        rate_set = CASE %(rate_action)s WHEN 'set' THEN true WHEN 'default' THEN false
                                        ELSE l.rate_set END,
        updated_at = now()
    RETURNING l.type
), finished AS (
    INSERT INTO type_finished (type) SELECT type FROM changed ON CONFLICT DO NOTHING
), told AS (
    SELECT pg_notify('jobfleet_jobs', 'limits') FROM changed
)
SELECT type FROM changed LEFT JOIN told ON true;

-- name: limited_types
SELECT type FROM type_limits
WHERE max_running IS NOT NULL OR rate_count IS NOT NULL
ORDER BY type;

-- name: lock_type_limits
-- The first statement of a recount: no claim of these types runs until the transaction ends.
-- In type order, as the claims take them (supervisor/lanes.py), so two never wait on each
-- other.
SELECT type FROM type_limits WHERE type = ANY(%(types)s::text[]) ORDER BY type FOR UPDATE;

-- name: limit_recount
-- After lock_type_limits, in its transaction (so this statement's snapshot sees every claim
-- of the types that committed): count the running jobs of each, from the small index of held
-- jobs, and set `claimed` so that `claimed - finished` is that count. Jobs that run from before
-- their type had a limit, or that a claim begun before the limit was set took, are adopted:
-- they count from now on. An outcome being written meanwhile is seen either as still running
-- and not yet in `finished`, or as neither: the counter stays true. Returns the types whose
-- count was off: what the counter said, the jobs running, and how many were adopted.
WITH adopted AS (
    UPDATE jobs j SET limited = true
    WHERE j.lease_expires_at IS NOT NULL AND j.state = 'running' AND NOT j.limited
      AND j.type = ANY(%(types)s::text[])
    RETURNING j.type
), running AS (
    SELECT type, count(*) AS n FROM (
        SELECT type FROM jobs
        WHERE lease_expires_at IS NOT NULL AND state = 'running' AND limited
          AND type = ANY(%(types)s::text[])
        UNION ALL
        SELECT type FROM adopted
    ) AS r
    GROUP BY type
), counts AS (
    SELECT l.type, l.claimed - coalesce(f.finished, 0) AS counted,
           coalesce(r.n, 0) AS running,
           (SELECT count(*) FROM adopted a WHERE a.type = l.type) AS adopted
    FROM type_limits l
    LEFT JOIN type_finished f ON f.type = l.type
    LEFT JOIN running r ON r.type = l.type
    WHERE l.type = ANY(%(types)s::text[])
), fixed AS (
    UPDATE type_limits l SET claimed = l.claimed + (c.running - c.counted)
    FROM counts c
    WHERE l.type = c.type AND c.running <> c.counted
)
SELECT type, counted, running, adopted FROM counts WHERE running <> counted;

-- name: type_list
-- `jobfleet types list` and GET /types: every type a node published or someone limited, with
-- its defaults, its limits (in force, declared, which were set at run time), the jobs running
-- (from the small index of held jobs) and the starts in the rate's current window. Sorted by
-- the caller: a sort here is what the plan test forbids of every statement that reads `jobs`.
SELECT t.type, d.queue, d.priority, d.max_attempts, d.timeout_seconds, d.backoff,
       d.backoff_seconds, l.max_running, l.rate_count, l.rate_seconds,
       l.declared_max_running, l.declared_rate_count, l.declared_rate_seconds,
       coalesce(l.max_running_set, false), coalesce(l.rate_set, false),
       coalesce(r.n, 0),
       CASE WHEN l.rate_seconds IS NOT NULL
            THEN jobfleet_rate_used(l.rate_log, extract(epoch FROM clock_timestamp())::float8,
                                    l.rate_seconds) END
FROM (SELECT type FROM job_types UNION SELECT type FROM type_limits) AS t
LEFT JOIN job_types d ON d.type = t.type
LEFT JOIN type_limits l ON l.type = t.type
LEFT JOIN (SELECT type, count(*) AS n FROM jobs
           WHERE lease_expires_at IS NOT NULL AND state = 'running' GROUP BY type) AS r
       ON r.type = t.type;
