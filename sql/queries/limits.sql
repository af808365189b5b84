-- Limits per job type (0009_type_limits.sql): what nodes publish from their handlers, what
-- `jobfleet types set` changes at run time, the list, and the recount that keeps the counters
-- true. The claims and the outcome writers that keep them are in processing.sql.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: publish_type_limits
-- A starting node publishes its handler's declared limits (NULL: none). A limit set at run time
-- (`*_set`) stays in force; the others follow the declaration. Nodes are told when something
-- changed ('limits' on jobfleet_jobs), and each type gets its type_finished row here, once.
-- The third column says whether the limit key in force changed: the type's jobs are then
-- keyed again (type_limits.rekey).
WITH old AS (
    SELECT limit_key FROM type_limits WHERE type = %(type)s
), published AS (
    INSERT INTO type_limits AS l (type, max_running, rate_count, rate_seconds,
                                  declared_max_running, declared_rate_count,
                                  declared_rate_seconds, limit_key, declared_limit_key,
                                  limit_key_changed_at)
    VALUES (%(type)s, %(max_running)s, %(rate_count)s, %(rate_seconds)s, %(max_running)s,
            %(rate_count)s, %(rate_seconds)s, %(limit_key)s, %(limit_key)s,
            CASE WHEN %(limit_key)s::text IS NOT NULL THEN now() END)
    ON CONFLICT (type) DO UPDATE
    SET declared_max_running = EXCLUDED.declared_max_running,
        declared_rate_count = EXCLUDED.declared_rate_count,
        declared_rate_seconds = EXCLUDED.declared_rate_seconds,
        declared_limit_key = EXCLUDED.declared_limit_key,
        max_running = CASE WHEN l.max_running_set THEN l.max_running
                           ELSE EXCLUDED.declared_max_running END,
        rate_count = CASE WHEN l.rate_set THEN l.rate_count ELSE EXCLUDED.declared_rate_count END,
        rate_seconds = CASE WHEN l.rate_set THEN l.rate_seconds
                            ELSE EXCLUDED.declared_rate_seconds END,
        limit_key = CASE WHEN l.limit_key_set THEN l.limit_key
                         ELSE EXCLUDED.declared_limit_key END,
        limit_key_changed_at = CASE
            WHEN l.limit_key_set OR l.limit_key IS NOT DISTINCT FROM EXCLUDED.declared_limit_key
            THEN l.limit_key_changed_at ELSE now() END,
        updated_at = now()
    WHERE (l.declared_max_running, l.declared_rate_count, l.declared_rate_seconds,
           l.declared_limit_key)
          IS DISTINCT FROM
          (EXCLUDED.declared_max_running, EXCLUDED.declared_rate_count,
           EXCLUDED.declared_rate_seconds, EXCLUDED.declared_limit_key)
    RETURNING l.type, l.max_running, l.rate_count, l.limit_key
), finished AS (
    INSERT INTO type_finished (type) SELECT type FROM published ON CONFLICT DO NOTHING
), told AS (
    SELECT pg_notify('jobfleet_jobs', 'limits') WHERE EXISTS (SELECT 1 FROM published)
)
SELECT type, max_running IS NOT NULL OR rate_count IS NOT NULL,
       limit_key IS DISTINCT FROM (SELECT limit_key FROM old)
FROM published LEFT JOIN told ON true;

-- name: set_type_limits
-- `jobfleet types set`: each limit (and the limit key) is 'keep' (unchanged), 'set' (to the
-- value given, NULL for none: wins over the declaration) or 'default' (back to the
-- declaration). The row is locked until the transaction ends, so the re-keying and the
-- recount that follow (rekey_queued, limit_recount) see no claim of the type between.
WITH old AS (
    SELECT limit_key FROM type_limits WHERE type = %(type)s
), changed AS (
    INSERT INTO type_limits AS l (type, max_running, rate_count, rate_seconds,
                                  max_running_set, rate_set, limit_key, limit_key_set,
                                  limit_key_changed_at)
    VALUES (%(type)s,
            CASE WHEN %(max_action)s = 'set' THEN %(max_running)s::integer END,
            CASE WHEN %(rate_action)s = 'set' THEN %(rate_count)s::integer END,
            CASE WHEN %(rate_action)s = 'set' THEN %(rate_seconds)s::integer END,
            %(max_action)s = 'set', %(rate_action)s = 'set',
            CASE WHEN %(key_action)s = 'set' THEN %(limit_key)s::text END,
            %(key_action)s = 'set', now())
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
        limit_key = CASE %(key_action)s WHEN 'set' THEN %(limit_key)s::text
                                        WHEN 'default' THEN l.declared_limit_key
                                        ELSE l.limit_key END,
        limit_key_set = CASE %(key_action)s WHEN 'set' THEN true WHEN 'default' THEN false
                                            ELSE l.limit_key_set END,
        limit_key_changed_at = CASE WHEN %(key_action)s = 'keep' THEN l.limit_key_changed_at
                                    ELSE now() END,
        updated_at = now()
    RETURNING l.type
), finished AS (
    INSERT INTO type_finished (type) SELECT type FROM changed ON CONFLICT DO NOTHING
), told AS (
    SELECT pg_notify('jobfleet_jobs', 'limits') FROM changed
)
SELECT type FROM changed LEFT JOIN told ON true;

-- name: limited_types
-- The types the recount looks at: those with limits or a limit key, and those whose key rows
-- are left to clear. Their second column: the limit key changed lately (RECENT_KEY_CHANGE),
-- so their queued jobs are keyed again, for any an enqueue keyed with the field before.
SELECT l.type, coalesce(l.limit_key_changed_at > now() - make_interval(secs => %(recent)s),
                        false)
FROM type_limits l
WHERE l.max_running IS NOT NULL OR l.rate_count IS NOT NULL OR l.limit_key IS NOT NULL
   OR EXISTS (SELECT 1 FROM key_limits k WHERE k.type = l.type)
ORDER BY l.type;

-- name: rekey_queued
-- The queued jobs of these types keyed with each type's limit key now (NULL: none), after the
-- field changed. A walk of the queue: run when the key changes, and by the recount a while
-- after, never per claim.
UPDATE jobs j SET limit_key = jobfleet_limit_key(j.payload, l.limit_key)
FROM type_limits l
WHERE l.type = ANY(%(types)s::text[]) AND j.type = l.type AND j.state = 'queued'
  AND j.limit_key IS DISTINCT FROM jobfleet_limit_key(j.payload, l.limit_key);

-- name: lock_type_limits
-- The first statement of a recount: no claim of these types runs until the transaction ends.
-- In type order, as the claims take them (supervisor/lanes.py), so two never wait on each
-- other.
SELECT type FROM type_limits WHERE type = ANY(%(types)s::text[]) ORDER BY type FOR UPDATE;

-- name: limit_recount
-- After lock_type_limits, in its transaction (so this statement's snapshot sees every claim
-- of the types that committed): count the running jobs of each type, and of each of its keys,
-- from the small index of held jobs, and set the `claimed` counters so that `claimed -
-- finished` is that count. Jobs that run from before their type had a limit, or that a claim
-- begun before the limit (or the limit key) changed took, are adopted: they count from now on,
-- for the key their payload has under the type's limit key now (for the type when it has
-- none). An outcome being written meanwhile is seen either as still running and not yet in
-- `finished`, or as neither: the counters stay true. A key with nothing running and no start
-- in its rate window loses its two rows (the next claim of it makes them again). Returns the
-- counters that were off: type, what the counter said, the jobs running, how many were adopted
-- (or moved to another key), and the key (NULL: the type's own counter).
WITH fields AS (
    SELECT type, limit_key AS field, rate_seconds,
           max_running IS NOT NULL OR rate_count IS NOT NULL AS counts
    FROM type_limits
    WHERE type = ANY(%(types)s::text[])
), adopted AS (
    -- (A type with a limit key and no limits takes turns only: nothing of it counts.)
    UPDATE jobs j SET limited = true, limit_key = jobfleet_limit_key(j.payload, f.field)
    FROM fields f
    WHERE j.lease_expires_at IS NOT NULL AND j.state = 'running' AND j.type = f.type
      AND f.counts
      AND j.type = ANY(%(types)s::text[])
      AND (NOT j.limited
           OR j.limit_key IS DISTINCT FROM jobfleet_limit_key(j.payload, f.field))
    RETURNING j.id, j.type, j.limit_key
), running AS (
    SELECT type, key, count(*) AS n FROM (
        SELECT j.type, j.limit_key AS key FROM jobs j
        WHERE j.lease_expires_at IS NOT NULL AND j.state = 'running' AND j.limited
          AND j.type = ANY(%(types)s::text[])
          AND j.id <> ALL(ARRAY(SELECT id FROM adopted))
        UNION ALL
        SELECT type, limit_key FROM adopted
    ) AS r
    GROUP BY type, key
), counts AS (
    SELECT l.type, l.claimed - coalesce(f.finished, 0) AS counted,
           coalesce((SELECT r.n FROM running r WHERE r.type = l.type AND r.key IS NULL), 0)
               AS running,
           (SELECT count(*) FROM adopted a WHERE a.type = l.type AND a.limit_key IS NULL)
               AS adopted
    FROM type_limits l
    LEFT JOIN type_finished f ON f.type = l.type
    WHERE l.type = ANY(%(types)s::text[])
), key_counts AS (
    SELECT coalesce(k.type, r.type) AS type, coalesce(k.key, r.key) AS key,
           coalesce(k.claimed, 0) - coalesce(f.finished, 0) AS counted,
           coalesce(r.n, 0) AS running, coalesce(f.finished, 0) AS finished,
           (SELECT count(*) FROM adopted a
            WHERE a.type = coalesce(k.type, r.type) AND a.limit_key = coalesce(k.key, r.key))
               AS adopted,
           k.type IS NOT NULL AS had_row, f.type IS NOT NULL AS had_finished,
           coalesce(jobfleet_rate_used(k.rate_log, extract(epoch FROM clock_timestamp()),
                                       (SELECT fl.rate_seconds FROM fields fl
                                        WHERE fl.type = k.type)), 0) AS rate_used
    FROM (SELECT * FROM key_limits WHERE type = ANY(%(types)s::text[])) AS k
    FULL JOIN (SELECT * FROM running WHERE key IS NOT NULL) AS r
           ON r.type = k.type AND r.key = k.key
    LEFT JOIN key_finished f ON f.type = coalesce(k.type, r.type)
                            AND f.key = coalesce(k.key, r.key)
), fixed AS (
    UPDATE type_limits l SET claimed = l.claimed + (c.running - c.counted)
    FROM counts c
    WHERE l.type = c.type AND c.running <> c.counted
), keys_made AS (
    INSERT INTO key_limits (type, key, claimed)
    SELECT type, key, finished + running FROM key_counts WHERE NOT had_row
), finished_made AS (
    INSERT INTO key_finished (type, key, finished)
    SELECT type, key, finished FROM key_counts
    WHERE NOT had_finished AND (running > 0 OR rate_used > 0)
), keys_fixed AS (
    UPDATE key_limits k SET claimed = c.finished + c.running
    FROM key_counts c
    WHERE k.type = c.type AND k.key = c.key AND c.had_row AND c.running <> c.counted
      AND (c.running > 0 OR c.rate_used > 0)
), keys_idle AS (
    DELETE FROM key_limits k USING key_counts c
    WHERE k.type = c.type AND k.key = c.key AND c.had_row AND c.running = 0
      AND c.rate_used = 0
), finished_idle AS (
    DELETE FROM key_finished f USING key_counts c
    WHERE f.type = c.type AND f.key = c.key AND c.had_finished AND c.running = 0
      AND c.rate_used = 0
)
SELECT type, counted, running, adopted, NULL::text FROM counts WHERE running <> counted
UNION ALL
SELECT type, counted, running, adopted, key FROM key_counts
WHERE running <> counted OR adopted > 0;

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
                                    l.rate_seconds) END,
       l.limit_key, l.declared_limit_key, coalesce(l.limit_key_set, false)
FROM (SELECT type FROM job_types UNION SELECT type FROM type_limits) AS t
LEFT JOIN job_types d ON d.type = t.type
LEFT JOIN type_limits l ON l.type = t.type
LEFT JOIN (SELECT type, count(*) AS n FROM jobs
           WHERE lease_expires_at IS NOT NULL AND state = 'running' GROUP BY type) AS r
       ON r.type = t.type;
