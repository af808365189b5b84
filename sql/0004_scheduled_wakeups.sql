-- jobfleet schema, version 4: supervisors also hear when jobs scheduled for later fall due.
--
-- The jobs channel carries '' for "ready now" (as in version 2) and 'at <epoch seconds>' for
-- the soonest job a statement scheduled for later, so an idle node claims it when it falls
-- due instead of polling for it. The time is absolute (the database's clock; nodes learn
-- their offset from it): the notification leaves at commit, which may be long after this
-- statement, so a delay counted from here would be late by as much. Still one or two
-- notifications per statement, not per row.

CREATE OR REPLACE FUNCTION jobfleet_notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    soonest timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM new_jobs WHERE state = 'queued' AND run_at <= now()) THEN
        PERFORM pg_notify('jobfleet_jobs', '');
    END IF;
    SELECT min(run_at) INTO soonest FROM new_jobs WHERE state = 'queued' AND run_at > now();
    IF soonest IS NOT NULL THEN
        PERFORM pg_notify('jobfleet_jobs', 'at ' || extract(epoch FROM soonest));
    END IF;
    RETURN NULL;
END
$$;
