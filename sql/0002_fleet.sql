-- jobfleet schema, version 2: wake-ups for idle supervisors.
--
-- One NOTIFY per statement that inserts ready jobs (not per row), and none for jobs scheduled
-- later: PostgreSQL folds identical notifications within a transaction, so a COPY of 100k
-- jobs costs one. Supervisors LISTEN and still poll on a backed-off timer as a safety net.

CREATE FUNCTION jobfleet_notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_jobs WHERE state = 'queued' AND run_at <= now()) THEN
        PERFORM pg_notify('jobfleet_jobs', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_ready
AFTER INSERT ON jobs
REFERENCING NEW TABLE AS new_jobs
FOR EACH STATEMENT EXECUTE FUNCTION jobfleet_notify_ready();
