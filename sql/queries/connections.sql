-- How a connection is bounded (jobfleet.db).
-- Loaded by name with jobfleet.queries.sql(). begin_bounded's values are formatted in as literals
-- (psycopg.sql.Literal): several statements in one string go by the simple query protocol,
-- which takes no bound parameters.

-- name: begin_bounded
-- A transaction whose timeouts hold for it alone, for connections that cannot carry them as
-- startup options (a transaction-mode pooler refuses `options` and moves each transaction to
-- any server connection, so a session SET would reach another client, or none). One round
-- trip: BEGIN and both SET LOCALs go as one simple query, and the transaction stays open.
BEGIN;
SET LOCAL statement_timeout = {statement_timeout};
SET LOCAL idle_in_transaction_session_timeout = {idle_in_transaction_session_timeout};

-- name: set_transaction_timeout
-- PostgreSQL 17 and later: a transaction of this session that lasts longer than %(ms)s
-- milliseconds ends the session (the supervisor's connections; see database.py).
SELECT set_config('transaction_timeout', %(ms)s, false)
