"""jobfleet.aio: the Python API for asyncio applications, on real asyncio connections."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import jobfleet
import jobfleet.aio
from jobfleet.jobs import AttemptResult
from jobfleet.supervisor.store import claim, record


def test_enqueue_commits_with_the_callers_transaction_or_vanishes_with_it(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    async def scenario() -> tuple[int, list[int], int]:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            async with aconn.transaction():
                kept = await jobfleet.aio.enqueue(aconn, "echo", {"n": 1}, priority=5)
                many = await jobfleet.aio.enqueue_many(aconn, "echo", [1, 2, 3], queue="bulk")
            try:
                async with aconn.transaction():
                    lost = await jobfleet.aio.enqueue(aconn, "echo", {"n": "lost"})
                    raise RuntimeError("the request failed")
            except RuntimeError:
                pass
            return kept, many, lost

    kept, many, lost = asyncio.run(scenario())
    rows = dict(conn.execute("SELECT id, queue FROM jobs").fetchall())
    assert rows == {kept: "default", **{i: "bulk" for i in many}}
    assert lost not in rows


def test_get_cancel_retry_and_wait_await_like_their_blocking_twins(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    done = jobfleet.enqueue(conn, "echo")
    claim(conn, holder="n/1", types=["echo"], queues=None, limit=1, lease_seconds=60)
    record(conn, "n", [AttemptResult(done, 1, "succeeded", result_json="[1, 2]")])
    queued = jobfleet.enqueue(conn, "echo")

    async def scenario() -> tuple[Any, ...]:
        shown = await jobfleet.aio.get(done)
        result = await jobfleet.aio.wait(done, timeout=5)
        cancelled = await jobfleet.aio.cancel(queued)
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            again = await jobfleet.aio.retry(queued, conn=aconn)
            with pytest.raises(jobfleet.JobNotFound):
                await jobfleet.aio.get(10**9, conn=aconn)
            with pytest.raises(jobfleet.JobfleetError, match="only dead or cancelled"):
                await jobfleet.aio.retry(done, conn=aconn)
            with pytest.raises(TimeoutError):
                await jobfleet.aio.wait(queued, timeout=0.1, conn=aconn)
        return shown, result, cancelled, again

    shown, result, cancelled, again = asyncio.run(scenario())
    assert shown == jobfleet.get(done)
    assert (result, cancelled, again) == ([1, 2], "cancelled", "queued")


def test_a_blocking_connection_is_pointed_at_the_blocking_call(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(TypeError, match=r"jobfleet\.enqueue\("):
        asyncio.run(jobfleet.aio.enqueue(conn, "echo"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"jobfleet\.get\("):
        asyncio.run(jobfleet.aio.get(1, conn=conn))  # type: ignore[arg-type]
