-- The web console's reads (jobfleet.http.console). Each is index-driven whatever the size of
-- `jobs` (tests/test_console_plans.py reads their plans on a never-analysed table): a page or
-- a live tick never counts or sorts the table.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: console_max_id
-- The newest job's id: the top of the first jobs page (one step down the primary key).
SELECT max(id) FROM jobs;

-- name: console_jobs_page
-- A jobs page: newest first, below `top` and down to `floor` (a window of ids, see
-- jobfleet.http.console.views.PAGE_WINDOW), so a page walks at most that many primary-key
-- entries however rare its filtered jobs are; `node` as list_jobs names it. Run after
-- index_plans, as the live tick is: without it, on a never-analysed table, a state filter
-- became a bitmap scan of the window plus a sort, and once analysed a read of every dead job
-- through jobs_dead plus a sort (1M rows), whatever their number.
SELECT id, type, queue, state, priority, attempt, max_attempts, created_at, finished_at,
       progress, coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) AS node
FROM jobs
WHERE id < %(top)s AND id >= %(floor)s
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(node)s::text IS NULL
       OR coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) = %(node)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: console_live_jobs
-- One live tick's jobs for every open console of this process: the newest `recent` (primary
-- key), the running ones (the lease index, at most `running`), and the ids the open pages
-- watch (primary key). Bounded by recent + running + the watched ids, whatever the table;
-- unordered (the caller orders the few rows).
SELECT id, type, queue, state, attempt, max_attempts, progress, created_at, finished_at, node
FROM (
    (SELECT id, type, queue, state, attempt, max_attempts, progress, created_at, finished_at,
            coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) AS node
     FROM jobs ORDER BY id DESC LIMIT %(recent)s)
    UNION ALL
    (SELECT id, type, queue, state, attempt, max_attempts, progress, created_at, finished_at,
            split_part(locked_by, '/', 1) AS node
     FROM jobs WHERE lease_expires_at IS NOT NULL AND state = 'running'
     ORDER BY lease_expires_at LIMIT %(running)s)
    UNION ALL
    (SELECT id, type, queue, state, attempt, max_attempts, progress, created_at, finished_at,
            coalesce(nullif(split_part(locked_by, '/', 1), ''), attempt_node) AS node
     FROM jobs WHERE id = ANY(%(watched)s::bigint[]))
) live;
