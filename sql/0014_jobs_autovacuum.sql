-- jobfleet schema, version 14: autovacuum for the churning `jobs` table (issue 22's soak).
--
-- Every job's row is updated at its claim and at its end, and deleted by the pruner once past
-- retention: at 3,000 jobs/s about 9,000 dead tuples a second. Stock autovacuum is always
-- due on such a table (20 % of it is dead within a minute); what it lacks is speed: each pass
-- sleeps 2 ms every 200 pages' worth of cost (autovacuum_vacuum_cost_delay), so on a 2-core
-- machine a pass over the 370 MB table took one to two minutes, and dead tuples peaked at 3.6
-- times the live ones (`jobfleet bench --scenario soak`, BENCHMARKS.md). Unthrottled passes
-- on this one table finish sooner and come round more often; the threshold starts them at
-- 1 % dead rather than 20 %, so a quieter queue is vacuumed in small passes too. Measured
-- the same way with these: the heap levels at 242 MB instead of 374 MB, dead tuples peak at
-- 0.94M instead of 1.8M, 11 passes in 15 min instead of 9.
-- job_attempt_log (failed attempts only) stayed under 10,000 dead tuples: left as it is.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
