"""The supervisor's connections: each lives, dies and reconnects on its own, and no call on
one waits without a bound, so a database that stops answering never freezes the node."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.types.string import TextLoader

from jobfleet.db import connection_options, mask_password
from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.settings import Settings

log = get_logger("jobfleet.supervisor")
T = TypeVar("T")

RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.2, 5.0


class DatabaseDown(Exception):
    """This connection is unusable right now; the caller keeps its state and tries later."""


class StatementError(Exception):
    """A statement failed on what it carried (a value PostgreSQL refused, or one that could
    not be encoded), not on the connection: the connection is fine, and the caller isolates
    the rows at fault rather than trying the same statement again."""


class ManagedConnection:
    """One autocommit asyncio connection, made on demand and remade after any failure."""

    def __init__(
        self,
        name: str,
        url: str,
        config: Settings,
        *,
        raw_json: bool = False,
        on_notify: Callable[[psycopg.Notify], None] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.config = config
        self.raw_json = raw_json  # jsonb as text: payloads pass through the supervisor undecoded
        # Called with each notification as it is read, during a statement or by `receive`.
        self.on_notify = on_notify
        # The server ends a transaction of this connection that outlives transaction_bound()
        # (PostgreSQL 17 and later): a node paused between a pipeline's statements and its
        # Sync holds the rows they locked with no statement running and not idle, where
        # neither of the other timeouts reaches, and the lease reaper passes locked rows over.
        self.transaction_seconds = transaction_bound(config)
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.down_since: float | None = None
        self.retry_at = 0.0
        self._retry_delay = RETRY_MIN_SECONDS
        self.generation = 0  # bumped on every new connection (session state is gone)
        self.errors = 0  # failures that cost the connection (a metric)

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.closed

    @property
    def bound(self) -> float:
        """The longest any one call may take before the connection is given up."""
        return self.config.statement_timeout_seconds + self.config.connect_timeout_seconds + 1

    async def run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `work` on the connection; DatabaseDown if it cannot be had or the call fails
        with the connection, StatementError if a statement failed on its data."""
        conn = await self._get()
        try:
            async with asyncio.timeout(self.bound):
                return await work(conn)
        except (psycopg.Error, TimeoutError, OSError) as exc:
            if isinstance(exc, psycopg.Error) and not _connection_lost(exc, conn):
                await self._after_statement_error(conn, exc)
                raise StatementError(_first_line(exc)) from exc
            await self._drop(exc)
            raise DatabaseDown(str(exc)) from exc
        except UnicodeError as exc:  # psycopg could not encode a parameter (a lone surrogate)
            await self._after_statement_error(conn, exc)
            raise StatementError(_first_line(exc)) from exc

    async def _after_statement_error(
        self, conn: psycopg.AsyncConnection[Any], exc: BaseException
    ) -> None:
        """Keep the connection if it is back to idle (autocommit: the failed statement's
        implicit transaction is gone); otherwise make a new one rather than guess."""
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await self._drop(exc)

    async def _get(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        now = time.monotonic()
        if now < self.retry_at:
            raise DatabaseDown(f"{self.name}: waiting {self.retry_at - now:.1f} s to reconnect")
        conn = None
        try:
            async with asyncio.timeout(self.config.connect_timeout_seconds + 1):
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, **connection_options(self.config)
                )
            async with asyncio.timeout(self.bound):
                await bound_transactions(conn, self.transaction_seconds)
        except (psycopg.Error, TimeoutError, OSError) as exc:
            if conn is not None:  # not kept: close it now, not at collection
                with contextlib.suppress(Exception):
                    await conn.close()
            await self._drop(exc)
            raise DatabaseDown(str(exc)) from exc
        if self.raw_json:
            conn.adapters.register_loader("jsonb", TextLoader)
        if self.on_notify is not None:
            conn.add_notify_handler(self.on_notify)
        if self.down_since is not None:
            log.warning(
                "database reachable again",
                extra={"connection": self.name, "down_seconds": round(now - self.down_since, 1)},
            )
        self.conn, self.down_since, self._retry_delay = conn, None, RETRY_MIN_SECONDS
        self.generation += 1
        return conn

    async def _drop(self, exc: BaseException) -> None:
        self.errors += 1
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is going away either way
                async with asyncio.timeout(1):
                    await conn.close()
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "database unreachable; retrying",
                extra={
                    "connection": self.name,
                    "url": mask_password(self.url),
                    "reason": _first_line(exc),
                },
            )
        self.retry_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.conn.close()
            self.conn = None


TRANSACTION_TIMEOUT_SINCE = 170000  # the first server version with transaction_timeout
# PostgreSQL leaves statement_timeout unarmed when transaction_timeout is not longer: a slow
# statement would then end the session (the leader's lock, the LISTEN, an outcome batch's
# halving on a refused statement) where it was cancelled on its own.
STATEMENT_MARGIN_SECONDS = 1.0


def transaction_bound(config: Settings) -> float:
    """How long a transaction of the supervisor's own connections may last: the lease (its
    jobs are up for reaping after it), and always longer than one statement may run."""
    return max(config.lease_seconds, config.statement_timeout_seconds + STATEMENT_MARGIN_SECONDS)


async def bound_transactions(conn: psycopg.AsyncConnection[Any], seconds: float) -> None:
    """Set the session's transaction_timeout where the server has it (not in the startup
    options: an older server refuses a setting it does not know, and the connection)."""
    if conn.info.server_version >= TRANSACTION_TIMEOUT_SINCE:
        await conn.execute(
            sql("set_transaction_timeout"), {"ms": str(max(1, round(seconds * 1000)))}
        )


def receive(conn: psycopg.AsyncConnection[Any]) -> int:
    """Read what has arrived on `conn` without waiting, and pass the notifications in it to the
    connection's handler (as psycopg does with those that arrive during a statement); how many
    there were. A connection found lost raises psycopg.OperationalError.

    Not psycopg's notifies(timeout=0): its lock, generator and asyncio wait cost an idle node
    0.06-0.07 ms between the socket turning readable and the new job's claim (issue 17)."""
    conn.pgconn.consume_input()
    return dispatch_notifications(conn.pgconn)


def dispatch_notifications(pgconn: pq.abc.PGconn) -> int:
    """Pass the notifications libpq has read and not yet handed out to the connection's
    handler (psycopg's dispatch to those added with add_notify_handler); how many."""
    if pgconn.status != pq.ConnStatus.OK:
        return 0
    count = 0
    while (note := pgconn.notifies()) is not None:
        count += 1
        if pgconn.notify_handler is not None:
            pgconn.notify_handler(note)
    return count


async def socket_ready(
    fd: int,
    seconds: float | None = None,
    *,
    write: bool = False,
    ready: asyncio.Future[None] | None = None,
) -> None:
    """Return once `fd` has something to read (`write`: room to write), or after `seconds`
    (None: no limit but the caller's), or once `ready` (a future the caller may resolve
    itself, to wait on more than the socket in one) is done."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future() if ready is None else ready
    if done.done():
        return

    def resolve() -> None:
        if not done.done():
            done.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, resolve)
    timer = None if seconds is None else loop.call_later(seconds, resolve)
    try:
        await done
    finally:
        if timer is not None:
            timer.cancel()
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _connection_lost(exc: psycopg.Error, conn: psycopg.AsyncConnection[Any]) -> bool:
    return conn.closed or isinstance(
        exc, psycopg.OperationalError | psycopg.errors.AdminShutdown | psycopg.InterfaceError
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
