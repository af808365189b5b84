-- jobfleet schema, version 10: unique jobs.
--
-- `enqueue(..., unique_for=600)`: within 600 s a second job of the same type and payload (or
-- the same idempotency key) is not added; the first one's id comes back, whatever its state.
-- A key holds its job here until it expires. Two enqueues of one key at once meet on this
-- table's primary key: the second waits for the first to commit or roll back, and no other
-- key, type or queue waits for either. A key goes with its job when the job is deleted.

CREATE TABLE unique_jobs (
    key        text PRIMARY KEY,
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX unique_jobs_job ON unique_jobs (job_id);
