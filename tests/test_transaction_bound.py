"""A supervisor connection's transactions are bounded on the server (transaction_timeout,
PostgreSQL 17 and later): a node that stops between a pipeline's statements and its Sync
holds the rows they locked with no statement running and no idle transaction, where neither
statement_timeout nor idle_in_transaction_session_timeout reach; the lease reaper passes
locked rows over, so they would wait for the node to come back. The bound stays longer than
a statement's, which PostgreSQL would otherwise leave unarmed."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

import jobfleet
from jobfleet.settings import Settings, settings
from jobfleet.supervisor.database import (
    TRANSACTION_TIMEOUT_SINCE,
    DatabaseDown,
    ManagedConnection,
    StatementError,
    transaction_bound,
)

T = TypeVar("T")
DEADLINE_SECONDS = 30.0


def configured(lease: float, statement: float) -> Settings:
    return dataclasses.replace(settings(), lease_seconds=lease, statement_timeout_seconds=statement)


def test_the_bound_is_the_lease_and_always_longer_than_a_statement() -> None:
    assert transaction_bound(configured(60, 30)) == 60
    assert transaction_bound(configured(30, 30)) == 31  # the defaults: the statement's + 1 s
    assert transaction_bound(configured(3, 2)) == 3  # the drill's


def locked(conn: psycopg.Connection[Any], job_id: int) -> bool:
    with conn.transaction():
        free = conn.execute(
            "SELECT id FROM jobs WHERE id = %s FOR UPDATE SKIP LOCKED", (job_id,)
        ).fetchall()
    return not free


async def until(check: Callable[[], bool], want: bool) -> float:
    """Seconds until check() reads `want`; fails past the deadline."""
    start = time.monotonic()
    while check() != want:
        assert time.monotonic() - start < DEADLINE_SECONDS, f"still {not want}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def on_bounded(
    db_url: str, config: Settings, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]
) -> tuple[T | None, str, bool]:
    """`work` on a connection made as the supervisor makes its own; its result, how the
    run ended ("done" or the error), and whether the connection was still there after."""

    async def scenario() -> tuple[T | None, str, bool]:
        db = ManagedConnection("lane-test", db_url, config)
        result, ended = None, "done"
        try:
            result = await db.run(work)
        except (DatabaseDown, StatementError) as exc:
            ended = f"{type(exc).__name__}: {exc}"
        try:
            return result, ended, db.connected
        finally:
            await db.close()

    return asyncio.run(scenario())


def test_a_pipeline_left_without_its_sync_lets_go_of_its_rows(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    conn.autocommit = True
    (job_id,) = jobfleet.enqueue_many(conn, "echo", [{"n": 1}])
    config = configured(lease=1.5, statement=0.5)  # a bound of 1.5 s
    newer = conn.info.server_version >= TRANSACTION_TIMEOUT_SINCE
    freed_after = 0.0

    async def stall(c: psycopg.AsyncConnection[Any]) -> str:
        nonlocal freed_after
        setting = (await (await c.execute("SHOW transaction_timeout")).fetchall())[0][0]
        async with c.pipeline():
            # Sent and run at once; its Sync goes only when the block ends, as a node
            # stopped by SIGSTOP right after a write's statements would leave it.
            sent = time.monotonic()
            await c.execute("UPDATE jobs SET priority = priority + 1 WHERE id = %s", (job_id,))
            await until(lambda: locked(conn, job_id), True)
            await until(lambda: locked(conn, job_id), False)
            freed_after = time.monotonic() - sent
        return str(setting)

    async def older(c: psycopg.AsyncConnection[Any]) -> int:
        return int((await (await c.execute("SELECT 1")).fetchall())[0][0])

    if not newer:  # no transaction_timeout there: made without it, the connection works
        assert on_bounded(db_url, config, older) == (1, "done", True)
        return
    setting, ended, connected = on_bounded(db_url, config, stall)
    # Let go by the server's bound (its clock starts after `sent`: never sooner, whatever the
    # machine's load), the session ended with it (the statement sent before the stop never
    # committed).
    assert setting is None and 1.45 <= freed_after < 2 * DEADLINE_SECONDS
    assert ended.startswith("DatabaseDown") and not connected, ended
    assert conn.execute("SELECT priority FROM jobs WHERE id = %s", (job_id,)).fetchone() == (0,)
    # A new connection is made for the next call, bounded as the first.
    shown, _, _ = on_bounded(db_url, config, show_transaction_timeout)
    assert shown == "1500ms"


async def show_transaction_timeout(c: psycopg.AsyncConnection[Any]) -> str:
    return str((await (await c.execute("SHOW transaction_timeout")).fetchall())[0][0])


@pytest.mark.parametrize("lease", [0.6, 1.0])
def test_a_slow_statement_meets_its_own_timeout_first(db_url: str, lease: float) -> None:
    """With the lease as long as a statement may run, or shorter: the statement is cancelled
    by statement_timeout, as before, not the session ended by the transaction's bound
    (PostgreSQL leaves statement_timeout unarmed under a transaction_timeout not longer)."""
    config = configured(lease=lease, statement=1.0)

    async def slow(c: psycopg.AsyncConnection[Any]) -> None:
        await c.execute("SELECT pg_sleep(3)")

    _, ended, _ = on_bounded(db_url, config, slow)
    assert "canceling statement due to statement timeout" in ended, ended
