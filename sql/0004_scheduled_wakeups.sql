-- jobfleet schema, version 4: supervisors also hear when jobs scheduled for later fall due.
--
-- The jobs channel carries '' for "ready now" (as in version 2) and 'in <seconds>' for the
-- soonest job a statement scheduled for later, so an idle node claims it when it falls due
-- instead of polling for it. Still one or two notifications per statement, not per row.

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
        PERFORM pg_notify('jobfleet_jobs',
                          'in ' || round(extract(epoch FROM soonest - clock_timestamp()), 3));
    END IF;
    RETURN NULL;
END
$$;
