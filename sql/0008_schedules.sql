-- jobfleet schema, version 8: periodic jobs.
--
-- Each node declares the schedules of its handlers (`@handler(cron=..., every=...)`) on its row
-- in `nodes`, so a schedule lasts as long as a live node declares it: remove `cron=` from the
-- code and it ends with the last node that had it. The leader keeps each type's state here:
-- the next tick due and the last one enqueued. A tick is enqueued with an idempotency key that
-- names it, in the transaction that moves `next_run` on, so a leader change mid-tick cannot
-- enqueue it twice; ticks missed while no node ran collapse into one, enqueued on return.

ALTER TABLE nodes ADD COLUMN schedules jsonb NOT NULL DEFAULT '{}';

CREATE TABLE schedules (
    type       text PRIMARY KEY,
    schedule   text NOT NULL,         -- "cron 0 3 * * *" or "every 30" (jobfleet.schedules)
    next_run   timestamptz NOT NULL,
    last_run   timestamptz,           -- the last tick enqueued
    last_job   bigint,                -- the job enqueued for it
    updated_at timestamptz NOT NULL DEFAULT now()
);
