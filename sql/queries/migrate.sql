-- Schema migrations: the table of applied versions and the lock that serialises migrators.
-- Loaded by name with jobfleet.queries.sql(); parameters always bound (%(name)s).

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS jobfleet_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_lock
-- Held for the transaction: ten hosts running `jobfleet migrate` at once apply each file once.
SELECT pg_advisory_xact_lock(7235101, 1);

-- name: applied_migrations
SELECT version FROM jobfleet_migrations ORDER BY version;

-- name: record_migration
INSERT INTO jobfleet_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: schema_version
SELECT coalesce(max(version), 0) FROM jobfleet_migrations;

-- name: migrations_table_exists
SELECT to_regclass('jobfleet_migrations') IS NOT NULL;
