-- jobfleet schema, version 11: limits per key (`limit_key`) and fair turns between keys.
--
-- A type with a limit key (a payload field, such as "customer_id") keeps `max_running` and
-- `rate` per value of that field instead of for the whole type, and is claimed in turns: each
-- claim walks the keys that have queued jobs from where the last claim of the type stopped
-- (`type_limits.turn`) and takes a share of the batch from each, so a key with a million jobs
-- waiting costs another key about one batch of waiting.
--
-- `jobs.limit_key` is the job's key, computed when it enters the queue (enqueue, and again by
-- `jobfleet types set --limit-key` for the jobs queued or running then): the ready keys are
-- found by a loose scan of jobs_keyed (one index descent per key, never the backlog), and a
-- key's jobs by one more. For a running job claimed under its key's limits (jobs.limited) it
-- is the key the job counts for; NULL there: the job counts for its type (0009).
--
-- The counters per key are 0009's, per (type, key): `claimed` in key_limits, written by the
-- claims of the type (which hold the type's row lock, so they take turns across the cluster),
-- `finished` in key_finished, written by every statement that takes a counted job out of
-- `running`, without waiting for a claim. A key's rows are created by the first claim of the
-- key and deleted by the recount once nothing of the key runs and its rate window is empty:
-- a million customers seen once leave no million rows behind.

ALTER TABLE type_limits
    -- The payload field whose values the limits hold for (NULL: for the whole type), as in
    -- force, as declared, and whether it was set at run time (wins until `default`).
    ADD COLUMN limit_key text CHECK (length(limit_key) BETWEEN 1 AND 128),
    ADD COLUMN declared_limit_key text,
    ADD COLUMN limit_key_set boolean NOT NULL DEFAULT false,
    -- When the field last changed: the recount re-keys the type's queue for a while after.
    ADD COLUMN limit_key_changed_at timestamptz,
    -- The last key a claim of the type walked to: the next claim starts after it.
    ADD COLUMN turn text;

ALTER TABLE jobs ADD COLUMN limit_key text;

-- The queued jobs of keyed types, by type and key, in each key's pickup order. Jobs of types
-- without a key are not in it (NULL), so it costs other types nothing.
CREATE INDEX jobs_keyed ON jobs (type, limit_key, priority DESC, run_at, id)
    WHERE state = 'queued' AND limit_key IS NOT NULL;

CREATE TABLE key_limits (
    type       text NOT NULL,
    key        text NOT NULL,
    claimed    bigint NOT NULL DEFAULT 0,
    rate_log   double precision[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (type, key)
);

CREATE TABLE key_finished (
    type     text NOT NULL,
    key      text NOT NULL,
    finished bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (type, key)
);

-- A payload's key for a limit key field: the field's text for a string, number or boolean
-- (so 42 and "42" are one key), a digest for one over 128 characters (the key rows and the
-- index stay small, whatever a payload holds), and '' (one shared "no key" bucket) for a
-- payload that is not an object, lacks the field, or holds null, an object or an array there.
-- Never an error: a job is never stuck for its payload. NULL only for no field.
CREATE FUNCTION jobfleet_limit_key(payload jsonb, field text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN field IS NULL THEN NULL
        WHEN jsonb_typeof(payload) <> 'object'
             OR coalesce(jsonb_typeof(payload -> field), 'null')
                NOT IN ('string', 'number', 'boolean') THEN ''
        WHEN length(payload ->> field) <= 128 THEN payload ->> field
        ELSE 'sha256:' || encode(sha256(convert_to(payload ->> field, 'UTF8')), 'hex')
    END
$$;
