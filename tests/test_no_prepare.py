"""Nothing jobfleet runs on a caller's connection is prepared on the server, whatever
`prepare_threshold` the caller left: behind a transaction-mode pooler a prepared statement
stays on one server connection while the client moves on (tests/test_pgbouncer.py runs the
same calls through a real PgBouncer). Here, on a direct connection that prepares everything
(prepare_threshold=0), the server's own list of prepared statements is the witness."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import jobfleet
import jobfleet.aio

PREPARED = "SELECT count(*) FROM pg_prepared_statements"


def _prepared(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(PREPARED, prepare=False).fetchone()
    assert row is not None
    return int(row[0])


def test_a_connection_that_prepares_everything_gets_nothing_prepared_by_jobfleet(
    db_url: str,
) -> None:
    with psycopg.connect(db_url, autocommit=True, prepare_threshold=0) as app:
        app.execute("SELECT 1")  # the caller's own statement is prepared: the setting works
        assert _prepared(app) == 1
        for n in range(8):  # past psycopg's default threshold of 5, too
            job_id = jobfleet.enqueue(app, "echo", {"n": n})
            jobfleet.enqueue(app, "echo", {"n": n}, idempotency_key=f"k{n}")
            jobfleet.enqueue(app, "echo", {"n": n}, idempotency_key=f"k{n}")  # found, not added
            jobfleet.enqueue(app, "echo", {"n": n}, unique_for=60)
            jobfleet.enqueue_many(app, "echo", [1, 2], delay=1)
            assert jobfleet.get(job_id, conn=app)["state"] == "queued"
            assert jobfleet.cancel(job_id, conn=app) == "cancelled"
            assert jobfleet.retry(job_id, conn=app) == "queued"
        assert _prepared(app) == 1


def test_an_asyncio_connection_that_prepares_everything_gets_nothing_prepared(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    async def scenario() -> int:
        async with await psycopg.AsyncConnection.connect(
            db_url, autocommit=True, prepare_threshold=0
        ) as app:
            for n in range(8):
                job_id = await jobfleet.aio.enqueue(app, "echo", {"n": n})
                await jobfleet.aio.enqueue(app, "echo", {"n": n}, idempotency_key=f"a{n}")
                await jobfleet.aio.enqueue(app, "echo", {"n": n}, idempotency_key=f"a{n}")
                await jobfleet.aio.enqueue_many(app, "echo", [1, 2])
                assert (await jobfleet.aio.get(job_id, conn=app))["state"] == "queued"
                assert await jobfleet.aio.cancel(job_id, conn=app) == "cancelled"
                assert await jobfleet.aio.retry(job_id, conn=app) == "queued"
            cur = await app.execute(PREPARED, prepare=False)
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    assert asyncio.run(scenario()) == 0
