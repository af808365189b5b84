"""The control connection: one session for maintenance, LISTEN, and a third lane's share of
the hot path. What it relies on, and what a node must still hear while it is busy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin
from tests.conftest import scalar, wait_until
from tests.fleet_support import running_on


def test_notifications_sent_during_a_statement_wait_for_the_next_listen(db_url: str) -> None:
    """The control session runs statements between its LISTEN waits; psycopg must keep what
    arrives meanwhile (jobfleet depends on it: psycopg >= 3.3)."""

    async def scenario() -> list[str]:
        listener = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        sender = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        async with listener, sender:
            await listener.execute("LISTEN jobfleet_test")
            busy = asyncio.ensure_future(listener.execute("SELECT pg_sleep(0.3)"))
            await asyncio.sleep(0.05)  # the listener is inside its statement now
            await sender.execute("NOTIFY jobfleet_test, 'during'")
            await busy
            return [n.payload async for n in listener.notifies(timeout=0)]

    assert asyncio.run(scenario()) == ["during"]


def test_a_busy_node_hears_a_cancel_at_once(conn: psycopg.Connection[Any], fleet: Any) -> None:
    """While a node drains a backlog its control connection also claims and writes; a cancel
    request still reaches it by NOTIFY, not at the next lease renewal (5 s by default)."""
    jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.05}] * 400)
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 60}, priority=9)
    fleet("a", "--workers", "2")
    wait_until(lambda: running_on(conn, job), what="the long job to start")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'queued'") > 0  # still busy
    asked = time.monotonic()
    assert admin.cancel(conn, job) == "running"
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job,)) == "cancelled",
        timeout=20,
        what="the job to end cancelled",
    )
    assert time.monotonic() - asked < 3.0, "the cancel waited for a lease renewal"


def test_an_idle_node_starts_scheduled_jobs_and_retries_when_they_fall_due(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """Idle, a node polls only every few seconds; jobs that fall due later are announced (an
    enqueue's NOTIFY carries the soonest; a retry's backoff comes back to the node that failed
    it), so each starts within moments of its run_at, not at the next poll."""
    fleet("a", "--workers", "1")
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM nodes") == 1, what="the node")
    # Long enough that the idle backoff has grown to its 5 s ceiling before they fall due.
    later = [jobfleet.enqueue(conn, "echo", {"n": n}, delay=8 + n) for n in range(2)]
    flaky = jobfleet.enqueue(conn, "flaky", {"fail_times": 1}, backoff="fixed:8.5")
    conn.commit()
    jobs = [*later, flaky]
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'succeeded'",
                (jobs,),
            )
            == 3
        ),
        timeout=40,
        what="the scheduled jobs and the retry to succeed",
    )
    lateness = dict(
        conn.execute(
            "SELECT id, extract(epoch FROM started_at - run_at)::float8 FROM jobs "
            "WHERE id = ANY(%s)",
            (jobs,),
        ).fetchall()
    )
    assert all(0 <= late < 1.0 for late in lateness.values()), lateness
