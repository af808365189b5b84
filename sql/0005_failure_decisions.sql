-- jobfleet schema, version 5: what a failed attempt means for its job is decided in one
-- place, and a retry's delay is computed from bounded numbers whatever a job row holds.
--
-- jobfleet_state_after_failure() is the decision the outcome writer (fail_batch) and the
-- lease reaper (reap_lost_attempts) both make: cancelled if someone asked, dead once the
-- attempts are spent or the failure is final, else queued for a retry. Each used to spell it
-- out in four CASE expressions of its own. IMMUTABLE and a single expression, so the planner
-- inlines it: calling it once per column costs nothing.
-- Version 1 multiplied the job's base delay before capping it, so a job enqueued with
-- `backoff = 'exponential:1e308'` (accepted then) overflowed double precision at its second
-- failure: the statement that records a batch of outcomes failed, and the node with it. The
-- base is now clamped to [0, cap] first (NaN and infinity included: PostgreSQL orders NaN
-- above every number), and the cap to [0, 10 years], so the product stays finite and
-- `make_interval` can always hold the result.

CREATE OR REPLACE FUNCTION jobfleet_backoff_seconds(
    strategy text, attempt integer, base double precision, cap double precision
) RETURNS double precision
LANGUAGE sql VOLATILE AS $$
    WITH bounded AS (
        SELECT least(greatest(coalesce(cap, 0), 0), 315360000) AS cap,
               greatest(coalesce(attempt, 1), 1) AS attempt,
               coalesce(base, 0) AS base
    ), clamped AS (
        SELECT cap, attempt, least(greatest(base, 0), cap) AS base FROM bounded
    )
    SELECT CASE coalesce(strategy, 'exponential')
        WHEN 'fixed'  THEN base
        WHEN 'linear' THEN least(cap, base * attempt)
        ELSE least(cap, base * power(2, least(attempt - 1, 60))) * (0.5 + random() / 2)
    END
    FROM clamped
$$;

CREATE FUNCTION jobfleet_state_after_failure(
    cancelled boolean, final boolean, attempt integer, max_attempts integer
) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN cancelled THEN 'cancelled'
        WHEN final OR attempt >= max_attempts THEN 'dead'
        ELSE 'queued'
    END
$$;
