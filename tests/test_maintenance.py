"""Each maintenance service's run_once, called directly against a real PostgreSQL (as River
tests its services), without a supervisor around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

import jobfleet
from jobfleet.supervisor.maintenance.heartbeat import Heartbeat
from jobfleet.supervisor.maintenance.leadership import Leadership
from jobfleet.supervisor.maintenance.lease_reaper import LeaseReaper, Reaped
from jobfleet.supervisor.maintenance.lease_renewal import LeaseRenewal, Renewed
from jobfleet.supervisor.maintenance.pruner import Pruner
from jobfleet.supervisor.maintenance.queue_gauges import QueueGauges
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.store import claim
from jobfleet.worker.registry import HandlerSpec
from tests.conftest import scalar

T = TypeVar("T")


def run(url: str, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    """`work` on a fresh autocommit async connection, as the control connection is."""

    async def go() -> T:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as aconn:
            return await work(aconn)

    return asyncio.run(go())


def _claimed(conn: psycopg.Connection[Any], holder: str, n: int, **options: Any) -> list[int]:
    ids = jobfleet.enqueue_many(conn, "echo", list(range(n)), **options)
    jobs = claim(conn, holder=holder, types=["echo"], queues=None, limit=n, lease_seconds=60)
    assert sorted(j.id for j in jobs) == ids
    return ids


def test_heartbeat_publishes_the_node_with_its_workers(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    node = Node("n1", {"echo": HandlerSpec("echo", lambda p: p, takes_context=False)}, ["q1"])
    run(db_url, lambda c: Heartbeat(node).run_once(c, workers=4, busy=3))
    row = conn.execute("SELECT workers, busy, types, queues FROM nodes WHERE name = 'n1'")
    assert row.fetchone() == (4, 3, ["echo"], ["q1"])
    run(db_url, lambda c: Heartbeat(node).run_once(c, workers=4, busy=0))
    assert scalar(conn, "SELECT busy FROM nodes WHERE name = 'n1'") == 0


def test_lease_renewal_extends_our_leases_only_and_reports_cancel_requests(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ours = _claimed(conn, "n1/a", 3)
    theirs = _claimed(conn, "n2/b", 1)
    conn.execute("UPDATE jobs SET lease_expires_at = now() + interval '1 second'")
    conn.execute("UPDATE jobs SET cancel_requested = true WHERE id = %s", (ours[1],))
    renewal = LeaseRenewal("n1/a", lease_seconds=600)
    renewed = run(db_url, lambda c: renewal.run_once(c, ours + theirs))
    assert sorted(renewed) == [
        Renewed(ours[0], 1, False),
        Renewed(ours[1], 1, True),
        Renewed(ours[2], 1, False),
    ]
    far = "lease_expires_at > now() + interval '500 seconds'"
    assert scalar(conn, f"SELECT count(*) FROM jobs WHERE {far}") == 3
    assert scalar(conn, f"SELECT {far} FROM jobs WHERE id = %s", (theirs[0],)) is False
    assert run(db_url, lambda c: renewal.run_once(c, [])) == []


def test_lease_renewal_leaves_leases_set_moments_ago_alone(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """A lease set less than `fresh_seconds` ago is not written again (nor reported); an
    older one is renewed as ever. A cancel asked of the fresh one (its NOTIFY missed) is
    reported by the renewal once its lease is that old."""
    fresh, old = _claimed(conn, "n1/a", 2)
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() + CASE WHEN id = %s"
        " THEN interval '599 seconds' ELSE interval '589 seconds' END,"
        " cancel_requested = (id = %s)",
        (fresh, fresh),
    )
    before = scalar(conn, "SELECT lease_expires_at FROM jobs WHERE id = %s", (fresh,))
    renewal = LeaseRenewal("n1/a", lease_seconds=600, fresh_seconds=5)
    assert run(db_url, lambda c: renewal.run_once(c, [fresh, old])) == [Renewed(old, 1, False)]
    assert scalar(conn, "SELECT lease_expires_at FROM jobs WHERE id = %s", (fresh,)) == before
    renewed = "lease_expires_at > now() + interval '595 seconds'"
    assert scalar(conn, f"SELECT {renewed} FROM jobs WHERE id = %s", (old,)) is True
    # The fresh lease ages past fresh_seconds: the next renewal reports the cancel.
    conn.execute("UPDATE jobs SET lease_expires_at = now() + interval '590 seconds'")
    assert run(db_url, lambda c: renewal.run_once(c, [fresh])) == [Renewed(fresh, 1, True)]


def test_leadership_is_held_by_one_session_and_passes_on_when_it_ends(db_url: str) -> None:
    async def until_leading(conn: psycopg.AsyncConnection[Any]) -> bool:
        # A session that ends (here, or a node of an earlier test) releases the lock when its
        # backend exits, a moment after the client closes: poll, with a deadline.
        deadline = time.monotonic() + 10
        while not await Leadership().run_once(conn):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def go() -> tuple[bool, bool, bool, bool]:
        first = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        second = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
        try:
            a = await until_leading(first)
            b = await Leadership().run_once(second)
            again = await Leadership().run_once(first)  # a leader asking again still leads
            await first.close()
            c = await until_leading(second)
            return a, b, again, c
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(go()) == (True, False, True, True)


def test_the_lease_reaper_requeues_expired_attempts_as_lost(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    expired, fresh = _claimed(conn, "n2/b", 2, max_attempts=1)[0], None
    [retry] = _claimed(conn, "n2/b", 1)
    [fresh] = _claimed(conn, "n2/b", 1)
    [earlier_run] = _claimed(conn, "n1/old", 1)
    conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '10 seconds' WHERE id = ANY(%s)",
        ([expired, retry],),
    )
    reaper = LeaseReaper(node="n1", holder="n1/new")
    # A backstop node reaps only what is overdue by more than `overdue`; its own earlier runs
    # at once.
    assert run(db_url, lambda c: reaper.run_once(c, 60.0)) == [
        Reaped(earlier_run, "echo", "default", "queued")
    ]
    reaped = run(db_url, lambda c: reaper.run_once(c, 0.0))
    assert sorted(reaped) == [
        Reaped(expired, "echo", "default", "dead"),
        Reaped(retry, "echo", "default", "queued"),
    ]
    outcomes = conn.execute(
        "SELECT job_id, outcome, node FROM job_attempts ORDER BY job_id"
    ).fetchall()
    assert outcomes == [(expired, "lost", "n2"), (retry, "lost", "n2"), (earlier_run, "lost", "n1")]
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (fresh,)) == "running"


def test_the_reaper_looks_for_earlier_runs_of_its_node_until_its_deadline_only(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """Past `earlier_runs_until` (a lease's time after the run's start, in the supervisor)
    the reaper walks the expired leases alone: a job an earlier run holds waits for its lease
    like any other; before it, or for the next run of the node, it goes back at once."""
    [held] = _claimed(conn, "n1/old", 1)
    past = LeaseReaper(node="n1", holder="n1/new", earlier_runs_until=time.monotonic() - 1)
    assert run(db_url, lambda c: past.run_once(c, 60.0)) == []
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (held,)) == "running"
    within = LeaseReaper(node="n1", holder="n1/new", earlier_runs_until=time.monotonic() + 60)
    assert run(db_url, lambda c: within.run_once(c, 60.0)) == [
        Reaped(held, "echo", "default", "queued")
    ]


def test_the_pruner_deletes_old_finished_jobs_and_keeps_dead_ones(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [1, 2, 3, 4])
    conn.execute(
        "UPDATE jobs SET state = s.state, finished_at = now() - interval '2 days', "
        "created_at = now() - interval '3 days' FROM (VALUES (%s, 'succeeded'), "
        "(%s, 'cancelled'), (%s, 'dead')) AS s(id, state) WHERE jobs.id = s.id::bigint",
        ids[:3],
    )
    assert run(db_url, Pruner(keep_seconds=86400).run_once) == 2
    left = conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
    assert left == [(ids[2], "dead"), (ids[3], "queued")]


def test_the_pruner_goes_in_bounded_windows_and_removes_exactly_the_expired_finished_jobs(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    old = "now() - interval '3 days'"
    ids = jobfleet.enqueue_many(conn, "echo", list(range(40)))
    kinds = ["succeeded"] * 20 + ["cancelled"] * 6 + ["dead"] * 3 + ["queued"] * 3
    kinds += ["running"] * 2 + ["succeeded"] * 6  # the last six finished recently
    conn.execute(
        f"UPDATE jobs SET state = s.state, created_at = {old}, finished_at = CASE "
        f"WHEN s.state IN ('queued', 'running') THEN NULL WHEN s.n > 34 THEN now() ELSE {old} END "
        "FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS s(id, state, n) "
        "WHERE jobs.id = s.id",
        (ids, kinds),
    )
    conn.execute(
        "INSERT INTO job_attempt_log (job_id, attempt, outcome) "
        "SELECT id, 1, 'failed' FROM jobs WHERE id = ANY(%s)",
        ([ids[0], ids[20], ids[26]],),  # a pruned succeeded and cancelled job's, a dead one's
    )
    # A young job after them all: the pass ends there.
    [young] = jobfleet.enqueue_many(conn, "echo", [1])

    # slice_seconds=0: one window per call, as a slice cut short by its time budget would be.
    pruner = Pruner(keep_seconds=86400, batch=4, slice_seconds=0)
    pruned = [run(db_url, pruner.run_once)]
    while pruner.more:
        pruned.append(run(db_url, pruner.run_once))
    assert sum(pruned) == 26
    assert len(pruned) == pruner.batches == 11  # 41 jobs, 4 a window; the 11th holds the young
    left = conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
    assert left == [(i, k) for i, k in zip(ids, kinds, strict=True) if ids.index(i) >= 26] + [
        (young, "queued")
    ]
    assert conn.execute("SELECT job_id FROM job_attempt_log").fetchall() == [(ids[26],)]
    # A new pass starts from the beginning and finds nothing more.
    assert run(db_url, Pruner(keep_seconds=86400, batch=4).run_once) == 0


def test_the_pruner_drops_unique_keys_past_their_window_only(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue(conn, "echo", {"n": 1}, unique_for=600)
    jobfleet.enqueue(conn, "echo", {"n": 2}, unique_for=600)
    conn.execute(
        "UPDATE unique_jobs SET expires_at = now() - interval '1 s' WHERE job_id = "
        "(SELECT min(job_id) FROM unique_jobs)"
    )
    run(db_url, Pruner(keep_seconds=86400).run_once)
    assert scalar(conn, "SELECT count(*) FROM unique_jobs WHERE expires_at > now()") == 1
    assert scalar(conn, "SELECT count(*) FROM unique_jobs") == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 2  # the jobs themselves stay


def test_queue_gauges_count_by_queue_and_read_zero_once_a_queue_empties(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue_many(conn, "echo", [1, 2], queue="a")
    [b] = jobfleet.enqueue_many(conn, "echo", [3], queue="b")
    gauges = QueueGauges()
    first = run(db_url, gauges.run_once)
    assert first["queue_depth"] == [
        ("a", "queued", 2),
        ("a", "running", 0),
        ("a", "dead", 0),
        ("b", "queued", 1),
        ("b", "running", 0),
        ("b", "dead", 0),
    ]
    assert [q for q, _ in first["oldest_ready_age"]] == ["a", "b"]
    conn.execute("DELETE FROM jobs WHERE id = %s", (b,))
    second = run(db_url, gauges.run_once)
    assert ("b", "queued", 0) in second["queue_depth"]
