-- jobfleet schema, version 20: the indexes of ready jobs carry each job's type, so a claim
-- passes over the jobs of other types in the index, without reading their rows.
--
-- A claim walks jobs_ready (or a queue's part of jobs_ready_by_queue) in the pickup order and
-- keeps the jobs of the types it asks for. With the type only in the table, each job of
-- another type on the way cost a read of its row: a claim of a type with nothing ready read
-- the whole backlog's rows to find that out. A node of the example handlers asks for each of
-- its async and threaded types apart (`async_sleep`, `sleep`): at its start beside 100k ready
-- no-op jobs, each such claim took 15-25 ms of one of PostgreSQL's processes (280 ms at 1M),
-- twice in the first 50 ms of a drain on a machine of two cores, and the drain of 100k took
-- 1.400 s from start to exit against 1.346 s with those claims left out (median of 8
-- alternating pairs). As the last key column, the type is checked on the index entry itself
-- (`type = ANY(...)` an index condition; PostgreSQL 17 and later keep the index order with
-- it, earlier versions read the row as before); the order is that of the unique id before it,
-- unchanged. Measured on PostgreSQL 18 here: that empty claim 15 ms -> 2.4 ms at 100k ready
-- jobs; COPY of 200k jobs 0.869 s -> 0.878 s (median of 5, within the noise); a drain of 100k
-- by claims of 500 unchanged (0.955 s -> 0.943 s).
--
-- Both indexes are built again here, holding `jobs` locked against every read and write until
-- the migration commits: 1.3 s over a million ready jobs. The lock is asked for with a bound,
-- so that a long transaction on `jobs` fails the migration (run it again) rather than stall
-- every node behind the waiting DROP; over a backlog of many millions, migrate with the nodes
-- stopped (the build is bounded by the statement timeout like any statement).
SET LOCAL lock_timeout = '5s';
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id, type) WHERE state = 'queued';
DROP INDEX jobs_ready_by_queue;
CREATE INDEX jobs_ready_by_queue ON jobs (queue, priority DESC, run_at, id, type)
    WHERE state = 'queued';
-- The bound is this migration's alone: migrations after it in the same run (one transaction)
-- wait for their locks as the connection was set up to (DEFAULT: the server's, the role's or
-- the connection options' lock_timeout, not this SET LOCAL's).
SET LOCAL lock_timeout TO DEFAULT;
