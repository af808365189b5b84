-- How a connection is bounded (jobfleet.db).
-- Loaded by name with jobfleet.queries.sql(); the values are formatted in as literals
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
