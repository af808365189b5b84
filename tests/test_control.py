"""The control connection: one session for maintenance, LISTEN, and a third lane's share of
the hot path. What it relies on, and what a node must still hear while it is busy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet import admin
from jobfleet.settings import settings
from jobfleet.supervisor.database import (
    DatabaseDown,
    ManagedConnection,
    receive,
    socket_ready,
)
from jobfleet.supervisor.listener import wakes
from tests.conftest import scalar, wait_until
from tests.fleet_support import running_on


def listening(db_url: str, heard: list[str]) -> ManagedConnection:
    """A connection as the control connection makes its own: each notification to `heard`."""
    return ManagedConnection(
        "control-test", db_url, settings(), on_notify=lambda note: heard.append(note.payload)
    )


def test_notifications_sent_during_a_statement_are_acted_on_then(db_url: str) -> None:
    """The control session runs statements between its waits on the socket; what arrives
    meanwhile goes to its handler as psycopg reads it, with nothing left for the next wait."""

    async def scenario() -> tuple[list[str], list[str], int]:
        heard: list[str] = []
        db = listening(db_url, heard)
        sender = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        async with sender:
            await db.run(lambda c: c.execute("LISTEN jobfleet_test"))
            busy = asyncio.ensure_future(db.run(lambda c: c.execute("SELECT pg_sleep(0.3)")))
            await asyncio.sleep(0.05)  # the listener is inside its statement now
            await sender.execute("NOTIFY jobfleet_test, 'during'")
            await busy
            after_statement = list(heard)
            left = await db.run(lambda c: asyncio.sleep(0, receive(c)))
            await db.close()
            return after_statement, heard, left

    assert asyncio.run(scenario()) == (["during"], ["during"], 0)


def test_a_listen_waits_on_the_socket_and_then_reads_what_came(db_url: str) -> None:
    """The control connection's wait for notifications (Listener.hear): socket_ready() returns
    when the server sends one, not before, and receive() then reads it without waiting and
    hands it over; with nothing sent, socket_ready() returns after its time."""

    async def scenario() -> tuple[bool, int, list[str], int]:
        heard: list[str] = []
        db = listening(db_url, heard)
        sender = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        async with sender:
            listener = await db.run(itself)
            await listener.execute("LISTEN jobfleet_test")
            await socket_ready(listener.pgconn.socket, 0.01)  # nothing comes: back after its time
            waiting = asyncio.ensure_future(socket_ready(listener.pgconn.socket, 60))
            for _ in range(5):
                await asyncio.sleep(0)
            early = waiting.done()
            await sender.execute("NOTIFY jobfleet_test, 'now'")
            await sender.execute("NOTIFY jobfleet_test, 'and now'")
            await asyncio.wait_for(waiting, 30)
            count = receive(listener)
            while len(heard) < 2:  # the second may come in a later packet
                await socket_ready(listener.pgconn.socket, 30)
                count += receive(listener)
            again = receive(listener)
            await db.close()
            return early, count, heard, again

    assert asyncio.run(scenario()) == (False, 2, ["now", "and now"], 0)


def test_a_wait_on_the_socket_ends_when_its_future_is_resolved_by_another_hand(
    db_url: str,
) -> None:
    """socket_ready(ready=...): the control connection waits on its socket and the node's
    waker with one future; resolving it ends the wait with nothing on the socket, and one
    resolved before the wait returns at once."""

    async def scenario() -> tuple[bool, bool, bool]:
        db = listening(db_url, [])
        listener = await db.run(itself)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        waiting = asyncio.ensure_future(socket_ready(listener.pgconn.socket, 60, ready=ready))
        for _ in range(5):
            await asyncio.sleep(0)
        early = waiting.done()
        ready.set_result(None)
        await asyncio.wait_for(waiting, 30)
        await asyncio.wait_for(socket_ready(listener.pgconn.socket, 60, ready=ready), 30)
        # The socket is no longer watched: no reader is left to remove.
        watched_again = not loop.remove_reader(listener.pgconn.socket)
        await db.close()
        return early, waiting.done(), watched_again

    assert asyncio.run(scenario()) == (False, True, True)


def test_a_lost_listening_connection_is_seen_when_read(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """The control loop's wait ends when the server goes away, and reading then fails as a
    lost connection (DatabaseDown to the loop, which connects and listens again)."""

    async def scenario() -> bool:
        db = listening(db_url, [])
        listener = await db.run(itself)
        await listener.execute("LISTEN jobfleet_test")
        conn.execute("SELECT pg_terminate_backend(%s)", (listener.info.backend_pid,))
        with pytest.raises(DatabaseDown):
            for _ in range(3):  # the server's goodbye (an error message), then the end
                await socket_ready(listener.pgconn.socket, 30)
                await db.run(lambda c: asyncio.sleep(0, receive(c)))
        await db.close()
        return db.connected

    assert asyncio.run(scenario()) is False


async def itself(c: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    return c


def busy_with_a_long_job(conn: psycopg.Connection[Any], fleet: Any) -> int:
    """A node of two workers with a backlog of short jobs, running a long one: its id."""
    jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.05}] * 400)
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 60}, priority=9)
    fleet("a", "--workers", "2")
    wait_until(lambda: running_on(conn, job), what="the long job to start")
    return job


def seconds_to_cancel(conn: psycopg.Connection[Any], job: int) -> float:
    """Cancel the running job; the seconds until it has ended cancelled."""
    asked = time.monotonic()
    assert admin.cancel(conn, job) == "running"
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job,)) == "cancelled",
        timeout=20,
        what="the job to end cancelled",
    )
    return time.monotonic() - asked


def test_a_busy_node_hears_a_cancel_at_once(conn: psycopg.Connection[Any], fleet: Any) -> None:
    """While a node drains a backlog its control connection also claims and writes; a cancel
    request still reaches it by NOTIFY, not at the next lease renewal (5 s by default)."""
    job = busy_with_a_long_job(conn, fleet)
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'queued'") > 0  # still busy
    assert seconds_to_cancel(conn, job) < 3.0, "the cancel waited for a lease renewal"


def test_a_busy_node_listens_again_after_its_connections_are_cut(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """The node reconnects while its backlog keeps it busy: it LISTENs again before going on
    with it, and a cancel asked while nobody listened is found by the look at its held jobs'
    cancels it takes right then, not at the next lease renewal."""
    job = busy_with_a_long_job(conn, fleet)
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
        "application_name = 'jobfleet' AND datname = current_database() AND "
        "pid <> pg_backend_pid()"
    )
    assert seconds_to_cancel(conn, job) < 3.0, "the cancel waited for a lease renewal"
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'queued'") > 0  # still busy


def test_a_cancel_for_a_job_waiting_in_its_childs_batch_stops_it_when_it_starts(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """One worker, two jobs claimed together: the second waits behind the first in the
    child's batch when its cancel comes. The cancel waits for it to start and stops it then,
    not at the next lease renewal (every 10 s by default) after it started."""
    first = jobfleet.enqueue(conn, "sleep", {"seconds": 1.5}, priority=9)
    second = jobfleet.enqueue(conn, "sleep", {"seconds": 60})
    fleet("a", "--workers", "1")
    wait_until(lambda: running_on(conn, first) and running_on(conn, second), what="both claimed")
    assert seconds_to_cancel(conn, second) < 4.5, "the cancel waited for a lease renewal"
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (first,)) == "succeeded"


def lateness(conn: psycopg.Connection[Any], jobs: list[int]) -> dict[int, float]:
    """Seconds from each job's run_at to its start, once every one has succeeded."""
    wait_until(
        lambda: (
            scalar(
                conn,
                "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'succeeded'",
                (jobs,),
            )
            == len(jobs)
        ),
        timeout=40,
        what="the jobs to succeed",
    )
    query = (
        "SELECT id, extract(epoch FROM started_at - run_at)::float8 FROM jobs WHERE id = ANY(%s)"
    )
    return dict(conn.execute(query, (jobs,)).fetchall())


# An idle node's polls back off: 0.05, 0.15, 0.35, 0.75, 1.55, 3.15, 6.35 s ... after its
# first empty claim, here up to one every 30 s. These tests put due times between the polls
# at 3.15 and 6.35 s, where a poll would find them well over a second late: only the
# announcements can start them on time.
QUIET = {"JOBFLEET_IDLE_POLL_SECONDS": "30"}
ON_TIME = 1.0


def test_an_idle_node_starts_announced_jobs_when_they_fall_due(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """Jobs scheduled by an enqueue are announced (the soonest of each statement)."""
    fleet("a", "--workers", "1", env=QUIET)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM nodes") == 1, what="the node")
    later = [jobfleet.enqueue(conn, "echo", {"n": n}, delay=4.2 + n / 5) for n in range(2)]
    late = lateness(conn, later)
    assert all(0 <= s < ON_TIME for s in late.values()), late


def test_an_idle_node_retries_a_failed_job_when_its_backoff_ends(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """The node that recorded the failure learns when the retry falls due."""
    fleet("a", "--workers", "1", env=QUIET)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM nodes") == 1, what="the node")
    flaky = jobfleet.enqueue(conn, "flaky", {"fail_times": 1}, backoff="fixed:4.2")
    late = lateness(conn, [flaky])
    assert 0 <= late[flaky] < ON_TIME, late


def test_an_idle_node_finds_jobs_scheduled_before_it_started(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """Nobody heard this job's announcement; the node asks when its queue runs dry."""
    before = jobfleet.enqueue(conn, "echo", {"n": "before"}, delay=5)  # 3.15 < due < 6.35
    fleet("a", "--workers", "1", env=QUIET)
    late = lateness(conn, [before])
    assert 0 <= late[before] < ON_TIME, late


def test_a_job_due_before_its_transaction_commits_starts_at_the_commit(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """The announcement leaves at commit and names the run_at on the database's clock, so a
    transaction that stays open past the delay does not push the job back by the delay."""
    fleet("a", "--workers", "1", env=QUIET)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM nodes") == 1, what="the node")
    with conn.transaction():  # an application's transaction, open past the job's delay
        job = jobfleet.enqueue(conn, "echo", {"n": "txn"}, delay=3)
        conn.execute("SELECT pg_sleep(4)")  # commits between polls at 3.15 and 6.35 s
    committed = scalar(conn, "SELECT clock_timestamp()")
    lateness(conn, [job])
    started = scalar(conn, "SELECT started_at FROM jobs WHERE id = %s", (job,))
    assert (started - committed).total_seconds() < 0.5


def test_ready_jobs_of_one_queue_wake_only_the_nodes_serving_it(db_url: str) -> None:
    """The insert trigger names the queue when a statement's ready jobs are all in one; jobs
    of several queues, and jobs scheduled for later, are announced as before."""
    with (
        psycopg.connect(db_url, autocommit=True) as listener,
        psycopg.connect(db_url, autocommit=True) as conn,
    ):
        listener.execute("LISTEN jobfleet_jobs")

        def heard() -> list[str]:
            return [n.payload for n in listener.notifies(timeout=0.5, stop_after=4)]

        jobfleet.enqueue(conn, "echo", queue="mail")
        assert heard() == ["queue mail"]
        jobfleet.enqueue_many(conn, "echo", [1, 2, 3], queue="reports")  # COPY
        assert heard() == ["queue reports"]
        with conn.transaction():
            jobfleet.enqueue(conn, "echo", queue="x.y")
            jobfleet.enqueue(conn, "echo", queue="x.y")
        assert heard() == ["queue x.y"]  # one per transaction, as PostgreSQL folds them
        conn.execute("INSERT INTO jobs (type, queue) VALUES ('echo', 'mail'), ('echo', 'reports')")
        assert heard() == [""]
        jobfleet.enqueue(conn, "echo", queue="mail", delay=60)
        later = heard()
        assert len(later) == 1 and later[0].startswith("at ")


def test_which_announcements_wake_a_node() -> None:
    assert wakes("queue mail", None)
    assert wakes("queue mail", ["mail", "reports"])
    assert not wakes("queue mail", ["reports"])
    assert wakes("queue x.y:z", ["x.y:z"])
    assert wakes("", ["reports"])  # jobs of several queues, a retry, a requeue
