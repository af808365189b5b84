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

-- name: bound_transaction
-- begin_bounded's timeouts as one statement, sent after a plain BEGIN where each message takes
-- one command (a pipeline: BEGIN, this, the work and COMMIT in one round trip). The values
-- are milliseconds as text; `true`: for this transaction alone, as SET LOCAL.
SELECT set_config('statement_timeout', %(statement_timeout)s, true),
       set_config('idle_in_transaction_session_timeout',
                  %(idle_in_transaction_session_timeout)s, true);
