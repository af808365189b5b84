"""A supervisor connection's transactions are bounded on the server (transaction_timeout,
PostgreSQL 17 and later): a node that stops between a pipeline's statements and its Sync
holds the rows they locked with no statement running and no idle transaction, where neither
statement_timeout nor idle_in_transaction_session_timeout reach; the lease reaper passes
locked rows over, so they would wait for the node to come back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

import jobfleet
from jobfleet.settings import settings
from jobfleet.supervisor.database import TRANSACTION_TIMEOUT_SINCE, DatabaseDown, ManagedConnection

BOUND_SECONDS = 1.5
DEADLINE_SECONDS = 30.0


def locked(conn: psycopg.Connection[Any], job_id: int) -> bool:
    with conn.transaction():
        free = conn.execute(
            "SELECT id FROM jobs WHERE id = %s FOR UPDATE SKIP LOCKED", (job_id,)
        ).fetchall()
    return not free


async def until(check: Any, want: bool) -> float:
    """Seconds until check() reads `want`; fails past the deadline."""
    start = time.monotonic()
    while check() != want:
        assert time.monotonic() - start < DEADLINE_SECONDS, f"still {not want}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def test_a_pipeline_left_without_its_sync_lets_go_of_its_rows(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    conn.autocommit = True
    (job_id,) = jobfleet.enqueue_many(conn, "echo", [{"n": 1}])
    if conn.info.server_version < TRANSACTION_TIMEOUT_SINCE:
        # No transaction_timeout there: the connection is made without it, and works.
        async def older() -> int:
            db = ManagedConnection("lane-test", db_url, settings(), transaction_seconds=1.5)
            try:

                async def one(c: psycopg.AsyncConnection[Any]) -> int:
                    return (await (await c.execute("SELECT 1")).fetchall())[0][0]

                return await db.run(one)
            finally:
                await db.close()

        assert asyncio.run(older()) == 1
        return

    async def scenario() -> tuple[str, float, str]:
        db = ManagedConnection("lane-test", db_url, settings(), transaction_seconds=BOUND_SECONDS)
        setting, freed_after = "", 0.0

        async def stall(c: psycopg.AsyncConnection[Any]) -> None:
            nonlocal setting, freed_after
            setting = (await (await c.execute("SHOW transaction_timeout")).fetchall())[0][0]
            async with c.pipeline():
                # Sent and run at once; its Sync goes only when the block ends, as a node
                # stopped by SIGSTOP right after a write's statements would leave it.
                await c.execute("UPDATE jobs SET priority = priority + 1 WHERE id = %s", (job_id,))
                await until(lambda: locked(conn, job_id), True)
                freed_after = await until(lambda: locked(conn, job_id), False)

        try:
            await db.run(stall)
            ended = "committed"
        except DatabaseDown as exc:
            ended = str(exc)
        finally:
            await db.close()
        return setting, freed_after, ended

    setting, freed_after, ended = asyncio.run(scenario())
    assert setting == "1500ms"
    # Let go by the server's bound (not sooner: no other cause), the session ended with it.
    assert BOUND_SECONDS / 2 < freed_after < DEADLINE_SECONDS
    assert ended != "committed" and "server closed the connection" in ended, ended
    # The server ended the transaction: the statement sent before the stop never committed.
    assert conn.execute("SELECT priority FROM jobs WHERE id = %s", (job_id,)).fetchone() == (0,)
