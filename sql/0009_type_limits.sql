-- jobfleet schema, version 9: limits per job type (max_running, rate), exact across nodes.
--
-- A limited type is claimed by a claim of its own (claim_limited) that locks the type's row
-- here FOR UPDATE, so claimers of that type take turns across the cluster, and in the same
-- statement claims no more than the limits allow and counts what it claimed. One row lock per
-- batch, never a count of running jobs per claim.
--
-- What is running is `claimed` (here, written by claims under that lock) less `finished`
-- (in type_finished, written by every statement that takes a counted job out of `running`:
-- complete, fail, release, the lease reaper). Two rows, so the writers of outcomes never wait
-- for a claim holding the first: a claim reads `finished` as of its snapshot, which can only
-- be behind, so it can only overcount what runs, never exceed a limit. A job counts when the
-- claim that took it was a limited one (jobs.limited, set by every claim), so a limit set or
-- removed while jobs run never makes a counter go wrong.
--
-- The rate is a sliding window, not a token bucket (a full bucket plus its refill lets 2N
-- start within one period): `rate_log` holds (claim time, jobs claimed) pairs of the last
-- period, flattened, oldest first. A claim within 1/100 of the period of the last pair adds
-- to it and moves it to its own time, so the log holds about 100 pairs at most, and a start
-- only ever counts for longer than it should, never shorter.

ALTER TABLE jobs ADD COLUMN limited boolean NOT NULL DEFAULT false;

CREATE TABLE type_limits (
    type                  text PRIMARY KEY,
    -- The limits in force: NULL is none.
    max_running           integer CHECK (max_running >= 0),
    rate_count            integer CHECK (rate_count >= 1),
    rate_seconds          integer CHECK (rate_seconds IN (1, 60, 3600)),
    -- What the handlers' decorator says, as the last node to start published it, and which
    -- limits someone set at run time (`jobfleet types set`): those win until set to `default`.
    declared_max_running  integer,
    declared_rate_count   integer,
    declared_rate_seconds integer,
    max_running_set       boolean NOT NULL DEFAULT false,
    rate_set              boolean NOT NULL DEFAULT false,
    claimed               bigint NOT NULL DEFAULT 0,
    rate_log              double precision[] NOT NULL DEFAULT '{}',
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_count IS NULL) = (rate_seconds IS NULL))
);

CREATE TABLE type_finished (
    type     text PRIMARY KEY,
    finished bigint NOT NULL DEFAULT 0
);

-- Starts counted in the window (at - period, at].
CREATE FUNCTION jobfleet_rate_used(log double precision[], at double precision,
                                   period double precision) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum(log[2 * i]), 0)::bigint
    FROM generate_series(1, coalesce(array_length(log, 1), 0) / 2) AS i
    WHERE log[2 * i - 1] > at - period
$$;

-- The log after `started` more starts at `at` (never before its last pair): pairs that left
-- the window dropped, and the new one merged into the last when they are close.
CREATE FUNCTION jobfleet_rate_logged(log double precision[], at double precision,
                                     period double precision, started bigint)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    kept double precision[] := '{}';
    last integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(log, 1), 0) / 2 LOOP
        IF log[2 * i - 1] > at - period THEN
            kept := kept || ARRAY[log[2 * i - 1], log[2 * i]];
        END IF;
    END LOOP;
    IF started > 0 THEN
        last := coalesce(array_length(kept, 1), 0);
        IF last > 0 AND at - kept[last - 1] < period / 100 THEN
            kept[last - 1] := at;
            kept[last] := kept[last] + started;
        ELSE
            kept := kept || ARRAY[at, started::double precision];
        END IF;
    END IF;
    RETURN kept;
END
$$;
