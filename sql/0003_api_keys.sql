-- jobfleet schema, version 3: API keys for the HTTP API, with a rate limit shared by every node.
--
-- A key reads `jf_<key_id>_<secret>`. Only the key id (to find the row) and a salted SHA-256
-- of the secret are stored; the key itself is printed once, at creation.
-- The token bucket lives on the key's row: every node's API takes its tokens from the same row
-- under a row lock, so the limit holds across the whole cluster, not per process.

CREATE TABLE api_keys (
    name          text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
    key_id        text NOT NULL UNIQUE,
    salt          bytea NOT NULL,
    secret_hash   bytea NOT NULL,
    scopes        text[] NOT NULL,
    rate_per_second double precision CHECK (rate_per_second > 0),  -- NULL: no limit
    burst         double precision CHECK (burst >= 1),
    tokens        double precision,
    refilled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
