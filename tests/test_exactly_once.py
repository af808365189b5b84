"""Transactional handlers: their writes through ctx.tx commit with their job's completion,
exactly once or not at all, whatever dies when (real workers, real kills, real pauses)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet.jobs import AttemptResult, Success
from jobfleet.supervisor.store import claim, record
from jobfleet.worker.transactional import Transactions
from tests.conftest import all_finished, scalar, wait_until
from tests.fleet_support import attempts, handler_module

HANDLERS = """
import os, time
from jobfleet.worker import handler

def _charge(payload, ctx):
    ctx.tx.execute(
        "INSERT INTO charges (job_id, attempt, amount) VALUES (%s, %s, %s)",
        (ctx.job_id, ctx.attempt, payload["amount"]),
    )
    if ctx.attempt == 1 and payload.get("hold"):
        ctx.progress(0.5, str(os.getpid()))  # written, not yet committed: kill me now
        time.sleep(payload["hold"])
    if payload.get("decline"):
        raise ValueError("card declined")
    return {"charged": payload["amount"]}

charge = handler("charge", transactional=True, max_attempts=3)(_charge)

@handler("charge_threads", transactional=True, concurrency=4)
def charge_threads(payload, ctx):
    return _charge(payload, ctx)
"""


@pytest.fixture
def charges(conn: psycopg.Connection[Any]) -> Iterator[None]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS charges (job_id bigint, attempt integer, amount integer)"
    )
    conn.execute("TRUNCATE charges")
    yield


def charged(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    return [tuple(r) for r in conn.execute("SELECT job_id, attempt FROM charges ORDER BY 1")]


def held_by(conn: psycopg.Connection[Any], job: int) -> bool:
    return bool(scalar(conn, "SELECT progress IS NOT NULL FROM jobs WHERE id = %s", (job,)))


def test_each_jobs_writes_commit_with_it_once_on_the_main_thread_and_on_threads(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any, charges: None
) -> None:
    env = handler_module(tmp_path, "charge_handlers", HANDLERS)
    main = jobfleet.enqueue_many(conn, "charge", [{"amount": n} for n in range(10)])
    threads = jobfleet.enqueue_many(conn, "charge_threads", [{"amount": n} for n in range(12)])
    declined = jobfleet.enqueue(conn, "charge", {"amount": 99, "decline": True}, max_attempts=1)
    node = fleet("a", "--workers", "2", "--burst", "--handlers", "charge_handlers", env=env)
    assert node.wait(60) == 0, node.log_tail()
    assert charged(conn) == [(job, 1) for job in sorted(main + threads)]
    rows = conn.execute(
        "SELECT state, result->>'charged', attempt_node FROM jobs WHERE id = ANY(%s)",
        (main + threads,),
    ).fetchall()
    assert all(state == "succeeded" and node_name == "a" for state, _, node_name in rows)
    # A handler that raises rolls its writes back; the failure is recorded as any other.
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (declined,)) == "dead"
    assert "card declined" in attempts(conn, declined)[0][3]


def test_a_worker_killed_after_writing_leaves_no_write_behind(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any, charges: None
) -> None:
    env = handler_module(tmp_path, "charge_handlers", HANDLERS)
    job = jobfleet.enqueue(conn, "charge", {"amount": 5, "hold": 60})
    fleet("a", "--workers", "1", "--handlers", "charge_handlers", env=env)
    wait_until(lambda: held_by(conn, job), what="the charge to be written, uncommitted")
    pid = int(scalar(conn, "SELECT progress->>'message' FROM jobs WHERE id = %s", (job,)))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all_finished(conn), timeout=60, what="the job to run again")
    assert charged(conn) == [(job, 2)]
    assert [a[1] for a in attempts(conn, job)] == ["crashed", "succeeded"]


def test_a_worker_whose_lease_was_lost_cannot_commit_its_writes(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any, charges: None
) -> None:
    env = handler_module(tmp_path, "charge_handlers", HANDLERS)
    job = jobfleet.enqueue(conn, "charge", {"amount": 7, "hold": 3})
    paused = fleet("a", "--workers", "1", "--handlers", "charge_handlers", env=env)
    wait_until(lambda: held_by(conn, job), what="the first attempt to write")
    paused.signal_group(signal.SIGSTOP)  # the whole node: its lease lapses
    fleet("b", "--workers", "1", "--handlers", "charge_handlers", env=env)
    wait_until(lambda: charged(conn) == [(job, 2)], timeout=60, what="b to charge")
    paused.signal_group(signal.SIGCONT)
    # The first attempt wakes, finishes its handler, and finds its job held by attempt 2:
    # its insert is rolled back, not committed beside the second one.
    wait_until(
        lambda: "lease was lost" in paused.log() or "lost" in str(attempts(conn, job)),
        what="the first attempt to be turned away",
    )
    wait_until(lambda: all_finished(conn), what="the job to end")
    assert charged(conn) == [(job, 2)]
    assert scalar(conn, "SELECT state, attempt FROM jobs WHERE id = %s", (job,)) == "succeeded"
    assert [a[1] for a in attempts(conn, job)] == ["lost", "succeeded"]


def test_a_crash_reported_after_the_worker_committed_changes_nothing(
    conn: psycopg.Connection[Any], charges: None
) -> None:
    # The worker committed the job's success with its writes, then died before telling its
    # supervisor, which records the attempt as crashed: the fence turns that record away.
    job = jobfleet.enqueue(conn, "charge", {"amount": 1})
    (claimed,) = claim(conn, holder="n/1", types=["charge"], queues=None, limit=1, lease_seconds=60)
    with conn.transaction():
        conn.execute("INSERT INTO charges VALUES (%s, %s, 1)", (job, claimed.attempt))
        written = record(conn, "n", [AttemptResult(job, claimed.attempt, "succeeded")])
    assert written.written == 1
    late = record(conn, "n", [AttemptResult(job, claimed.attempt, "crashed", error="died")])
    assert late.late == 1
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job,)) == "succeeded"
    assert [a[1] for a in attempts(conn, job)] == ["succeeded"]
    assert charged(conn) == [(job, 1)]


def test_a_transactional_attempt_whose_claim_a_crash_undid_rolls_its_writes_back(
    conn: psycopg.Connection[Any], db_url: str, charges: None
) -> None:
    # Claims commit without waiting for their WAL flush: after a crash the job may be claimed
    # again under the same attempt number by another holder. The first run's fenced
    # completion names its own holder, matches nothing, and takes its writes with it.
    job = jobfleet.enqueue(conn, "charge", {"amount": 3})
    (gone,) = claim(conn, holder="a/1", types=["charge"], queues=None, limit=1, lease_seconds=60)
    conn.execute(
        "UPDATE jobs SET state = 'queued', attempt = attempt - 1, locked_by = NULL,"
        " lease_expires_at = NULL, started_at = NULL WHERE id = %s",
        (job,),
    )
    (again,) = claim(conn, holder="b/1", types=["charge"], queues=None, limit=1, lease_seconds=60)
    assert again.attempt == gone.attempt

    def charge(job_id: int, attempt: int, *, tx: psycopg.Connection[Any]) -> Success:
        tx.execute("INSERT INTO charges VALUES (%s, %s, 3)", (job_id, attempt))
        return (job_id, attempt, "null", os.getpid(), 1, 2)

    outcome, committed = Transactions(db_url, "a", "a/1").run(charge, job, gone.attempt)
    assert not committed and isinstance(outcome, AttemptResult) and outcome.outcome == "lost"
    assert charged(conn) == []
    outcome, committed = Transactions(db_url, "b", "b/1").run(charge, job, again.attempt)
    assert committed
    assert charged(conn) == [(job, again.attempt)]
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job,)) == "succeeded"
