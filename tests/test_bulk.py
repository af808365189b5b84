"""Bulk maintenance by filter (jobfleet.bulk): cancel the queued jobs of a type or queue, queue
the dead jobs of a type again, in bounded batches that never wait on a claim."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet import bulk
from jobfleet.bulk import Batches, JobFilter
from jobfleet.options import OptionError
from jobfleet.supervisor.store import claim
from tests.conftest import scalar, wait_until
from tests.test_admin import make_dead

ECHO = JobFilter(type="echo")


def states(conn: psycopg.Connection[Any], type: str) -> dict[str, int]:
    rows = conn.execute("SELECT state, count(*) FROM jobs WHERE type = %s GROUP BY state", (type,))
    return dict(rows.fetchall())


def test_cancel_by_type_cancels_exactly_its_queued_jobs_in_batches(
    conn: psycopg.Connection[Any],
) -> None:
    jobfleet.enqueue_many(conn, "echo", [None] * 3, priority=10)
    running = claim(conn, holder="n1", types=["echo"], queues=None, limit=3, lease_seconds=30)
    jobfleet.enqueue_many(conn, "echo", list(range(2500)))
    jobfleet.enqueue_many(conn, "echo", list(range(2500)), delay=3600)  # scheduled for later
    jobfleet.enqueue_many(conn, "noop", list(range(300)))
    jobfleet.enqueue_many(conn, "noop", list(range(200)), queue="other")
    seen: list[int] = []

    changed = bulk.cancel_queued(conn, ECHO, Batches(progress=seen.append))

    assert changed == 5000
    assert seen == [1000, 2000, 3000, 4000, 5000]
    assert states(conn, "echo") == {"cancelled": 5000, "running": 3}
    assert states(conn, "noop") == {"queued": 500}
    assert (
        scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'running' AND cancel_requested") == 0
    )
    assert {j.id for j in running} == {
        r[0] for r in conn.execute("SELECT id FROM jobs WHERE state = 'running'")
    }
    assert (
        scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'cancelled' AND finished_at IS NULL")
        == 0
    )
    assert bulk.cancel_queued(conn, ECHO) == 0


def test_cancel_by_queue_or_by_type_and_queue(conn: psycopg.Connection[Any]) -> None:
    jobfleet.enqueue_many(conn, "echo", [1] * 7, queue="a")
    jobfleet.enqueue_many(conn, "noop", [1] * 5, queue="a")
    jobfleet.enqueue_many(conn, "echo", [1] * 4, queue="b")
    assert bulk.cancel_queued(conn, JobFilter("echo", "a"), Batches(size=3)) == 7
    assert bulk.cancel_queued(conn, JobFilter(queue="a")) == 5
    assert dict(
        conn.execute("SELECT queue, count(*) FROM jobs WHERE state = 'queued' GROUP BY queue")
    ) == {"b": 4}


def test_a_bulk_change_needs_a_checked_filter_and_its_own_transactions(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue(conn, "echo")
    with pytest.raises(OptionError, match="give a type, a queue or both") as no_filter:
        JobFilter()
    assert no_filter.value.option == "type"
    with pytest.raises(OptionError, match="not both") as both:
        JobFilter(type="echo", every=True)
    assert both.value.option == "type"
    for bad in ("", "a b", "x\x00", "-lead", "t" * 129):
        with pytest.raises(OptionError, match="is not valid") as refused:
            JobFilter(queue=bad)
        assert refused.value.option == "queue"
    for size in (0, bulk.BATCH_SIZE_MAX + 1, True, 2.5):
        with pytest.raises(OptionError) as refused:
            Batches(size=size)  # type: ignore[arg-type]
        assert refused.value.option == "batch_size"
    # Not autocommit: no batch could commit on its own.
    with psycopg.connect(db_url) as plain, pytest.raises(ValueError, match="autocommit"):
        bulk.cancel_queued(plain, ECHO)
    assert states(conn, "echo") == {"queued": 1}


def test_retry_dead_by_type_queues_them_again_with_fresh_attempts(
    conn: psycopg.Connection[Any],
) -> None:
    failed = make_dead(conn, 25, type="fail")
    make_dead(conn, 4, type="flaky")
    assert bulk.retry_dead(conn, JobFilter("fail"), Batches(size=10)) == 25
    rows = conn.execute("SELECT id, state, attempt, max_attempts FROM jobs WHERE type = 'fail'")
    assert sorted(rows.fetchall()) == [(i, "queued", 1, 2) for i in failed]
    assert states(conn, "flaky") == {"dead": 4}
    assert bulk.retry_dead(conn, JobFilter("fail")) == 0
    # Every dead job, when said in so many words (dlq retry --all), in batches too.
    make_dead(conn, 3, type="echo")
    assert bulk.retry_dead(conn, JobFilter(every=True), Batches(size=2)) == 7
    assert states(conn, "flaky") == {"queued": 4} and states(conn, "echo") == {"queued": 3}


def test_a_bulk_cancel_passes_over_jobs_a_claim_holds_without_waiting(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue_many(conn, "echo", list(range(50)))
    with (
        psycopg.connect(db_url) as claimer,
        psycopg.connect(db_url, autocommit=True) as other,
    ):
        # A claim in flight: its rows locked, its transaction not committed yet.
        held = claimer.execute("SELECT id FROM jobs ORDER BY id LIMIT 5 FOR UPDATE").fetchall()
        # Were the cancel waiting on those rows, it would fail after 2 s instead of passing.
        other.execute("SET lock_timeout = '2s'")
        assert bulk.cancel_queued(other, ECHO, Batches(size=10)) == 45
        claimer.rollback()
    queued = conn.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY id").fetchall()
    assert queued == held


def test_claims_beside_a_bulk_cancel_are_never_blocked_and_each_job_ends_one_way(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue_many(conn, "noop", list(range(3000)))
    result: dict[str, Any] = {}

    def cancel() -> None:
        with psycopg.connect(db_url, autocommit=True) as own:
            result["changed"] = bulk.cancel_queued(own, JobFilter("noop"), Batches(size=50))

    claimed: list[int] = []
    canceller = threading.Thread(target=cancel)
    with psycopg.connect(db_url, autocommit=True) as claimer:
        # Were a claim waiting on a batch's locks it would fail after 1 s (LockNotAvailable).
        claimer.execute("SET lock_timeout = '1s'")
        canceller.start()
        while canceller.is_alive() or not claimed:
            batch = claim(
                claimer, holder="n1", types=["noop"], queues=None, limit=20, lease_seconds=30
            )
            claimed += [j.id for j in batch]
            if not batch and not canceller.is_alive():
                break
    canceller.join(timeout=120)
    assert not canceller.is_alive()
    counts = states(conn, "noop")
    assert counts.get("queued", 0) == 0
    assert counts.get("running", 0) == len(claimed) == len(set(claimed))
    assert counts.get("cancelled", 0) == result["changed"]
    assert len(claimed) + result["changed"] == 3000


def test_a_live_node_and_a_bulk_cancel_leave_every_job_in_one_state(
    conn: psycopg.Connection[Any], db_url: str, fleet: Any
) -> None:
    # Short sleeps: the node is still claiming when the cancel runs.
    ids = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.002}] * 5000)
    fleet("a", "--workers", "2")
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE attempt > 0"), 60, "a claim")
    changed = bulk.cancel_queued(conn, JobFilter("sleep"), Batches(size=200))
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == 0,
        60,
        "every job finished",
    )
    counts = states(conn, "sleep")
    assert counts["cancelled"] == changed > 0
    assert counts["succeeded"] + changed == len(ids)
    # A cancelled job never started; a succeeded one ran once, and was never cancelled.
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM jobs WHERE (state = 'cancelled' AND (attempt <> 0 OR "
            "started_at IS NOT NULL)) OR (state = 'succeeded' AND (attempt <> 1 OR "
            "cancel_requested))",
        )
        == 0
    )
    assert scalar(conn, "SELECT count(*) FROM job_attempt_log") == 0
