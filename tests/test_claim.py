"""Claiming: order, delays, type and queue filters, and no double claims under contention."""

from __future__ import annotations

import multiprocessing
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet import admin
from jobfleet.supervisor.store import claim, claim_statement, claimed_jobs
from tests.conftest import scalar, wait_until

ALL = ["echo", "noop", "fail", "flaky", "sleep"]


def take(
    conn: psycopg.Connection[Any],
    limit: int = 100,
    types: list[str] | None = None,
    queues: list[str] | None = None,
    node: str = "n1",
) -> list[Any]:
    return claim(
        conn, holder=node, types=types or ALL, queues=queues, limit=limit, lease_seconds=30
    )


def test_claim_orders_by_priority_then_fifo(conn: psycopg.Connection[Any]) -> None:
    low1 = jobfleet.enqueue(conn, "echo", priority=0)
    high1 = jobfleet.enqueue(conn, "echo", priority=10)
    low2 = jobfleet.enqueue(conn, "echo", priority=0)
    high2 = jobfleet.enqueue(conn, "echo", priority=10)
    mid = jobfleet.enqueue(conn, "echo", priority=5)
    got = [j.id for j in take(conn, limit=2)] + [j.id for j in take(conn, limit=10)]
    assert got == [high1, high2, mid, low1, low2]


def test_claim_sets_attempt_lease_and_holder(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo", {"p": 1})
    [job] = take(conn, node="node-a")
    assert (job.id, job.attempt, job.payload) == (job_id, 1, {"p": 1})
    row = conn.execute(
        "SELECT state, locked_by, lease_expires_at - now() FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None and row[0] == "running" and row[1] == "node-a"
    assert 29 <= row[2].total_seconds() <= 30
    assert take(conn) == []


def test_delayed_job_is_not_claimed_before_its_time(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo", delay=1.0)
    assert take(conn) == []
    claimed = wait_until(lambda: take(conn), timeout=10, what="the delayed job to be ready")
    assert [j.id for j in claimed] == [job_id]
    started = scalar(conn, "SELECT started_at - created_at FROM jobs WHERE id = %s", (job_id,))
    assert started.total_seconds() >= 1.0


def test_claim_takes_only_handled_types_and_served_queues(conn: psycopg.Connection[Any]) -> None:
    jobfleet.enqueue(conn, "mystery")
    other_queue = jobfleet.enqueue(conn, "echo", queue="reports")
    default = jobfleet.enqueue(conn, "echo")
    assert [j.id for j in take(conn, queues=["default"])] == [default]
    assert [j.id for j in take(conn, queues=["reports", "x"])] == [other_queue]
    assert take(conn) == []
    assert scalar(conn, "SELECT state FROM jobs WHERE type = 'mystery'") == "queued"


@pytest.mark.parametrize(
    "served",
    [["a", "b"], ["b", "a", "b"], ["a", "b", "x", "y", "z"]],
    ids=["two queues", "a queue twice", "five queues (the walk of the whole backlog)"],
)
def test_a_node_of_some_queues_claims_their_best_jobs_first(
    conn: psycopg.Connection[Any], served: list[str]
) -> None:
    """Walked one queue at a time (up to four) or in the whole backlog, a node serving some
    queues claims the best of their ready jobs first (priority, then FIFO) across all of them,
    each once, none of another queue's, none of a paused queue's."""
    elsewhere = jobfleet.enqueue(conn, "echo", queue="c", priority=9)
    a_low = jobfleet.enqueue(conn, "echo", queue="a")
    b_high = jobfleet.enqueue(conn, "echo", queue="b", priority=5)
    a_high = jobfleet.enqueue(conn, "echo", queue="a", priority=5)
    b_low = jobfleet.enqueue(conn, "echo", queue="b")
    paused = jobfleet.enqueue(conn, "echo", queue="p", priority=9)
    admin.set_paused(conn, "p", True)
    served = [*served, "p"]
    assert [j.id for j in take(conn, limit=2, queues=served)] == [b_high, a_high]
    assert [j.id for j in take(conn, limit=1, queues=served)] == [a_low]
    assert [j.id for j in take(conn, limit=5, queues=served)] == [b_low]
    assert take(conn, queues=served) == []
    queued = "SELECT array_agg(id ORDER BY id) FROM jobs WHERE state = 'queued'"
    assert scalar(conn, queued) == [elsewhere, paused]


def _claim_all(url: str, barrier: Any, out: Any) -> None:
    got: list[int] = []
    with psycopg.connect(url, autocommit=True) as c:
        barrier.wait()
        while batch := claim(c, holder="n", types=["echo"], queues=None, limit=7, lease_seconds=30):
            got.extend(j.id for j in batch)
    out.put(got)


def test_eight_processes_claiming_never_share_a_job(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", list(range(3000)))
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db_url, barrier, out)) for _ in range(8)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    flat = [i for chunk in claimed for i in chunk]
    assert len(flat) == len(set(flat)) == 3000
    assert set(flat) == set(ids)
    assert sum(1 for chunk in claimed if chunk) >= 2  # the work really was shared
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE attempt <> 1") == 0


def test_a_claim_commits_unflushed_and_leaves_the_session_as_it_was(
    conn: psycopg.Connection[Any],
) -> None:
    """The plain claim (jobfleet_claim) carries its own settings: its transaction commits
    without waiting for the WAL flush, and its planner settings end with the call; nothing is
    left on the session (its connection may run anything next)."""
    watched = ("synchronous_commit", "enable_seqscan", "enable_bitmapscan", "enable_sort")

    def settings() -> list[str]:
        return [scalar(conn, "SELECT current_setting(%s)", (name,)) for name in watched]

    conn.execute("SET synchronous_commit = on")  # the test server may run with it off
    before = settings()
    assert before == ["on", "on", "on", "on"]
    job_id = jobfleet.enqueue(conn, "echo")
    statement = claim_statement(holder="n1", types=ALL, queues=None, limit=5, lease_seconds=30)
    with conn.transaction():  # the claim as the lanes send a lone one (store.run_claims)
        [job] = claimed_jobs(conn.execute(*statement, prepare=True).fetchall())
        assert job.id == job_id
        assert settings() == ["off", *before[1:]]
    assert settings() == before
