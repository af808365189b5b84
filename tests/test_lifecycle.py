"""Outcomes: success, retry with backoff, dead after max attempts, fencing, release."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet.jobs import AttemptResult
from jobfleet.settings import load_settings
from jobfleet.supervisor.outbox import progress_statement
from jobfleet.supervisor.store import claim, record, release
from tests.conftest import scalar

CONFIG = load_settings(backoff_base_seconds=10, backoff_max_seconds=3600)


def take(conn: psycopg.Connection[Any], node: str = "n1") -> list[Any]:
    return claim(conn, holder=node, types=["echo", "fail"], queues=None, limit=10, lease_seconds=30)


def fail(job: Any, **kw: Any) -> AttemptResult:
    return AttemptResult(
        job.id,
        job.attempt,
        kw.pop("outcome", "failed"),
        error=kw.pop("error", "boom"),
        pid=4242,
        **kw,
    )


def state(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state, attempt, error, result FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def attempts(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT attempt, outcome, error, node, pid FROM job_attempts WHERE job_id = %s "
            "ORDER BY attempt",
            (job_id,),
        )
    ]


def test_success_stores_result_and_attempt(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo", {"a": 1})
    [job] = take(conn)
    done = record(
        conn,
        "n1",
        [AttemptResult(job.id, job.attempt, "succeeded", result_json='{"ok": true}', pid=77)],
        CONFIG,
    )
    assert (done.written, done.late) == (1, 0)
    assert state(conn, job_id) == ("succeeded", 1, None, {"ok": True})
    assert attempts(conn, job_id) == [(1, "succeeded", None, "n1", 77)]
    assert scalar(conn, "SELECT finished_at IS NOT NULL AND locked_by IS NULL FROM jobs")


def test_failure_retries_after_backoff_then_dies(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "fail", max_attempts=2, backoff="fixed:0")
    [job] = take(conn)
    record(conn, "n1", [fail(job, error="first")], CONFIG)
    assert state(conn, job_id)[:3] == ("queued", 1, "first")
    [job] = take(conn)
    assert job.attempt == 2
    record(conn, "n1", [fail(job, error="second")], CONFIG)
    assert state(conn, job_id)[:3] == ("dead", 2, "second")
    assert [a[:3] for a in attempts(conn, job_id)] == [
        (1, "failed", "first"),
        (2, "failed", "second"),
    ]
    dead = conn.execute("SELECT id, last_error, job->>'type' FROM dead_jobs").fetchall()
    assert dead == [(job_id, "second", "fail")]


def test_retry_waits_out_the_backoff(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "fail", backoff="fixed:30")
    [job] = take(conn)
    record(conn, "n1", [fail(job)], CONFIG)
    wait = scalar(conn, "SELECT run_at - now() FROM jobs WHERE id = %s", (job_id,))
    assert 29 <= wait.total_seconds() <= 30
    assert take(conn) == []


def test_exponential_backoff_uses_settings_and_jitter(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "fail", max_attempts=5)
    for attempt in (1, 2, 3):
        conn.execute("UPDATE jobs SET run_at = now() WHERE id = %s", (job_id,))
        [job] = take(conn)
        record(conn, "n1", [fail(job)], CONFIG)
        wait = scalar(
            conn, "SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE id = %s", (job_id,)
        )
        full = 10 * 2 ** (attempt - 1)
        assert full / 2 - 1 <= float(wait) <= full


@pytest.mark.parametrize(
    ("strategy", "attempt", "low", "high"),
    [
        ("fixed", 1, 5, 5),
        ("fixed", 7, 5, 5),
        ("linear", 1, 5, 5),
        ("linear", 4, 20, 20),
        ("exponential", 1, 2.5, 5),
        ("exponential", 4, 20, 40),
        ("exponential", 40, 50, 100),  # capped
        (None, 2, 5, 10),
    ],
)
def test_backoff_function(
    conn: psycopg.Connection[Any], strategy: str | None, attempt: int, low: float, high: float
) -> None:
    for _ in range(20):
        value = scalar(conn, "SELECT jobfleet_backoff_seconds(%s, %s, 5, 100)", (strategy, attempt))
        assert low <= value <= high


def test_final_failure_is_dead_at_once(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "fail", max_attempts=5)
    [job] = take(conn)
    record(conn, "n1", [fail(job, final=True, error="no handler")], CONFIG)
    assert state(conn, job_id)[:2] == ("dead", 1)


def test_stale_attempt_cannot_overwrite_the_newer_one(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo")
    [old] = take(conn, node="paused-node")
    # The paused node's lease lapses and the job is given to another node.
    conn.execute("UPDATE jobs SET state = 'queued', locked_by = NULL WHERE id = %s", (job_id,))
    [new] = take(conn, node="live-node")
    assert new.attempt == old.attempt + 1
    late = record(
        conn,
        "paused-node",
        [AttemptResult(old.id, old.attempt, "succeeded", result_json='"stale"')],
        CONFIG,
    )
    assert (late.written, late.late) == (0, 1)
    late_fail = record(conn, "paused-node", [fail(old)], CONFIG)
    assert (late_fail.written, late_fail.late) == (0, 1)
    assert state(conn, job_id)[:2] == ("running", 2)
    record(
        conn,
        "live-node",
        [AttemptResult(new.id, new.attempt, "succeeded", result_json='"fresh"')],
        CONFIG,
    )
    assert state(conn, job_id) == ("succeeded", 2, None, "fresh")
    assert attempts(conn, job_id) == [(2, "succeeded", None, "live-node", None)]
    # A finished job cannot be finished again either.
    again = record(conn, "live-node", [AttemptResult(new.id, new.attempt, "succeeded")], CONFIG)
    assert again.late == 1


def test_an_attempt_whose_claim_a_crash_undid_cannot_finish_its_job_claimed_again(
    conn: psycopg.Connection[Any],
) -> None:
    """Claims commit without waiting for their WAL flush: one acknowledged just before a
    database crash may be gone after it, its job queued as before and claimed again under the
    same attempt number. The holder is part of the fence, so the first run's outcomes,
    releases and progress are turned away, and the new holder's count."""
    job_id = jobfleet.enqueue(conn, "echo")
    [gone] = take(conn, node="a/1")
    # What the crash leaves: the job as it was before the claim.
    conn.execute(
        "UPDATE jobs SET state = 'queued', attempt = attempt - 1, locked_by = NULL,"
        " lease_expires_at = NULL, started_at = NULL WHERE id = %s",
        (job_id,),
    )
    [again] = take(conn, node="b/1")
    assert again.attempt == gone.attempt
    stale = AttemptResult(gone.id, gone.attempt, "succeeded", result_json='"stale"')
    assert record(conn, "a", [stale], CONFIG, holder="a/1").late == 1
    assert record(conn, "a", [fail(gone)], CONFIG, holder="a/1").late == 1
    assert release(conn, [gone], holder="a/1") == 0
    progress = progress_statement({(gone.id, gone.attempt): (0.5, "stale")}, holder="a/1")
    conn.execute(*progress)
    row = conn.execute(
        "SELECT state, attempt, locked_by, progress FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("running", again.attempt, "b/1", None)
    fresh = AttemptResult(again.id, again.attempt, "succeeded", result_json='"fresh"')
    assert record(conn, "b", [fresh], CONFIG, holder="b/1").written == 1
    assert state(conn, job_id) == ("succeeded", again.attempt, None, "fresh")


def test_batch_with_mixed_outcomes(conn: psycopg.Connection[Any]) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [1, 2, 3, 4], max_attempts=1)
    jobs = take(conn)
    results = [
        AttemptResult(jobs[0].id, 1, "succeeded", result_json="1"),
        fail(jobs[1], outcome="crashed", error="killed by signal 9"),
        fail(jobs[2], outcome="timed_out", error="timeout after 5 s"),
        AttemptResult(jobs[3].id, 1, "succeeded", result_json="4"),
    ]
    assert record(conn, "n1", results, CONFIG).written == 4
    states = dict(conn.execute("SELECT id, state FROM jobs").fetchall())
    assert [states[i] for i in ids] == ["succeeded", "dead", "dead", "succeeded"]
    outcomes = dict(conn.execute("SELECT job_id, outcome FROM job_attempts").fetchall())
    assert [outcomes[i] for i in ids] == ["succeeded", "crashed", "timed_out", "succeeded"]


def test_release_returns_unstarted_jobs_without_spending_an_attempt(
    conn: psycopg.Connection[Any],
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [1, 2])
    jobs = take(conn)
    assert release(conn, jobs) == 2
    assert conn.execute("SELECT state, attempt FROM jobs ORDER BY id").fetchall() == [
        ("queued", 0),
        ("queued", 0),
    ]
    assert sorted(j.id for j in take(conn)) == ids
