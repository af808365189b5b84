-- The HTTP API's keys and their shared rate limits (jobfleet.apikeys).
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: create_api_key
INSERT INTO api_keys (name, key_id, salt, secret_hash, scopes, rate_per_second, burst, tokens,
                      refilled_at)
VALUES (%(name)s, %(key_id)s, %(salt)s, %(secret_hash)s, %(scopes)s, %(rate)s, %(burst)s,
        %(burst)s, now())
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: list_api_keys
SELECT name, key_id, scopes, rate_per_second, created_at, revoked_at
FROM api_keys ORDER BY name;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name;

-- name: api_key_by_id
SELECT name, salt, secret_hash, scopes, rate_per_second, revoked_at IS NOT NULL AS revoked
FROM api_keys WHERE key_id = %(key_id)s;

-- name: api_keys_by_ids
-- `api_key_by_id` for the keys of many requests at once (the HTTP API's concurrent ones).
SELECT key_id, name, salt, secret_hash, scopes, rate_per_second,
       revoked_at IS NOT NULL AS revoked
FROM api_keys WHERE key_id = ANY(%(key_ids)s::text[]);

-- name: take_api_token
-- The token bucket: refill by the time since the last request (capped at the burst), then
-- take one token if there is one. The row lock orders concurrent requests from every node.
-- `wait` is how long until a token is there (0 when one was taken).
UPDATE api_keys k
SET tokens = CASE WHEN b.available >= 1 THEN b.available - 1 ELSE b.available END,
    refilled_at = b.now
FROM (
    SELECT name, clock_timestamp() AS now,
           least(burst, tokens + rate_per_second
                 * extract(epoch FROM clock_timestamp() - refilled_at)) AS available
    FROM api_keys WHERE name = %(name)s
    FOR UPDATE
) AS b
WHERE k.name = b.name
RETURNING b.available >= 1 AS allowed,
          CASE WHEN b.available >= 1 THEN 0.0
               ELSE (1 - b.available) / k.rate_per_second END AS wait;
