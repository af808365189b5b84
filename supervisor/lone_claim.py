"""A lane's lone claim, run on libpq itself (psycopg's `pgconn`, its public low-level
interface): a statement prepared once per connection, parameters encoded once per node and
batch size, rows loaded by psycopg's Transformer as a cursor's are.

Issue 17, idle latency: a claim of one job through psycopg's execute() cost the supervisor
0.18 ms of CPU (its cursor, the adaptation of five parameters, the asyncio wait) against a
round trip of 0.18 ms from a C client (pgbench) for the same statement. Run here it costs
0.06-0.08 ms, and an idle node's enqueue -> start p50 went 0.10-0.12 ms down (two nodes side
by side, samples alternating between them, 4,000 each).

A claim a lane sends alone takes this path (store.run_claims): an idle node's, and each of a
busy node's batches; rounds of several claims stay on psycopg's pipeline. The rows are those
psycopg returns on the same connection, which a test checks column by column.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import Transformer

from jobfleet.queries import sql
from jobfleet.supervisor.database import dispatch_notifications, socket_ready

STATEMENT = b"jobfleet_lone_claim"
CANCEL_SECONDS = 5.0  # an interrupted claim's cancel must be confirmed within this
Params = list[bytes | None]

# The connections the statement is prepared on (a new connection after a failure has none).
_prepared: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()


def text_array(items: Sequence[str] | None, encoding: str = "utf-8") -> bytes | None:
    """A text[] parameter in PostgreSQL's text format: each element quoted, its backslashes
    and double quotes escaped; None for NULL."""
    if items is None:
        return None
    if any("\x00" in item for item in items):
        raise psycopg.DataError("a claim's type or queue name holds a NUL character")
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return ("{" + ",".join(quoted) + "}").encode(encoding)


@lru_cache(maxsize=64)  # a node's holder and names are fixed; only the batch size varies
def encoded(
    holder: str,
    types: tuple[str, ...],
    queues: tuple[str, ...] | None,
    limit: int,
    lease_seconds: float,
    encoding: str = "utf-8",
) -> Params:
    """`claim_lone`'s parameters in the text format, from claim_statement's, in the
    connection's `encoding` (a Python codec), as psycopg would send them. A NUL is refused
    as psycopg refuses it (DataError: a statement error, not the node's end)."""
    if "\x00" in holder:
        raise psycopg.DataError("a claim's holder holds a NUL character")
    return [
        holder.encode(encoding),
        text_array(types, encoding),
        text_array(queues, encoding),
        str(int(limit)).encode(),
        repr(float(lease_seconds)).encode(),
    ]


def params_of(params: dict[str, Any], encoding: str = "utf-8") -> Params:
    """The encoded parameters of a claim_statement's named ones."""
    queues = params["queues"]
    return encoded(
        params["node"],
        tuple(params["types"]),
        None if queues is None else tuple(queues),
        params["limit"],
        params["lease_seconds"],
        encoding,
    )


def decoded(conn: psycopg.AsyncConnection[Any], result: pq.abc.PGresult) -> list[Any]:
    """The claim's rows, loaded as psycopg loads a cursor's (its Transformer, in C with
    psycopg-binary, with the connection's loaders: jsonb as text on the lanes). By hand, a
    claim of 2,000 rows took 1.6 ms of the supervisor's core against 0.6 ms."""
    transformer = Transformer.from_context(conn)
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


async def claim(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> list[Any]:
    """Run one claim (claim_statement's parameters) on `conn`; its rows. Errors are psycopg's,
    as an execute() raises them, so ManagedConnection tells a lost connection from a refused
    statement as it does for any other. Notifications libpq reads meanwhile go to the
    connection's handler, as psycopg passes on those it reads during its statements."""
    encoding = conn.info.encoding
    values = params_of(params, encoding)
    async with conn.lock:
        try:
            try:
                result = await _prepared_run(conn, values)
            except psycopg.errors.InvalidSqlStatementName:
                # psycopg deallocates every statement prepared on a session after a rollback
                # (DEALLOCATE ALL: the control connection's transactions), ours with them.
                # The failed call did nothing: prepare the statement again and claim.
                _prepared.discard(conn)
                result = await _prepared_run(conn, values)
        finally:
            dispatch_notifications(conn.pgconn)
    return decoded(conn, result)


async def _prepared_run(conn: psycopg.AsyncConnection[Any], values: Params) -> pq.abc.PGresult:
    if conn not in _prepared:
        conn.pgconn.send_prepare(STATEMENT, sql("claim_lone").encode())
        # Already there: a call interrupted after the server had prepared it.
        with contextlib.suppress(psycopg.errors.DuplicatePreparedStatement):
            await _result(conn)
        _prepared.add(conn)
    conn.pgconn.send_query_prepared(STATEMENT, values)
    return await _result(conn)


async def _result(conn: psycopg.AsyncConnection[Any]) -> pq.abc.PGresult:
    """Send what is queued and wait for the statement's result, never blocking the loop.
    Interrupted midway (cancelled, timed out), the statement is cancelled in the server too,
    as psycopg does for its own: its jobs stay queued and the connection idle for the next
    call, or, if the server does not confirm within CANCEL_SECONDS, the connection is closed
    so that the next call makes a new one. (A claim the server finished before the request
    arrived holds its jobs until their leases expire and the reaper requeues them.)"""
    pgconn = conn.pgconn
    try:
        return await _awaited(pgconn, conn.info.encoding)
    except BaseException:
        if pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            await _cancel(conn)
        raise


async def _awaited(pgconn: pq.abc.PGconn, encoding: str) -> pq.abc.PGresult:
    """The last result of the statement sent; psycopg's error for a failed one (`encoding`:
    the connection's, as a Python codec)."""
    while pgconn.flush():
        await socket_ready(pgconn.socket, write=True)
    last = None
    while True:
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                if last is None:
                    raise psycopg.OperationalError("the statement returned no result")
                if last.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
                    raise psycopg.errors.error_from_result(last, encoding=encoding)
                return last
            last = result
        await socket_ready(pgconn.socket)


async def _cancel(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        async with asyncio.timeout(CANCEL_SECONDS):
            await conn.cancel_safe(timeout=CANCEL_SECONDS)
            with contextlib.suppress(psycopg.errors.QueryCanceled):
                await _awaited(conn.pgconn, conn.info.encoding)
    except Exception:  # no confirmation, or a failure: the connection's state is unknown
        conn.pgconn.finish()
    except BaseException:  # interrupted again
        conn.pgconn.finish()
        raise
