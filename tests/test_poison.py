"""Nothing a job carries stops a node: handlers that raise, report and return what PostgreSQL
cannot store, and job rows holding numbers its arithmetic cannot, on a real supervisor that
must still be up and working afterwards."""

from __future__ import annotations

from typing import Any

import psycopg

import jobfleet
from tests.conftest import scalar, wait_until
from tests.fleet_support import handler_module

POISON = """
from jobfleet.worker import handler

@handler("nul_error")
def nul_error(payload):
    raise ValueError("bad\\x00byte")

@handler("surrogate_error")
def surrogate_error(payload):
    raise ValueError("lone \\udcff surrogate")

@handler("huge_error")
def huge_error(payload):
    raise ValueError("x" * 20_000_000 + " the end")

@handler("nul_progress")
def nul_progress(payload, ctx):
    ctx.progress(0.5, "half\\x00way \\ud800")
    return "done"

@handler("nan_progress")
def nan_progress(payload, ctx):
    ctx.progress(float("nan"), 12345)
    return "done"

@handler("surrogate_result")
def surrogate_result(payload):
    return {"text": "\\udcff"}

@handler("always_fails")
def always_fails(payload):
    raise RuntimeError("try again")

@handler("fine")
def fine(payload):
    return payload
"""


def _job(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state, attempt, error, progress FROM jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_a_node_survives_every_poisonous_value_and_keeps_working(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "poison", POISON)
    env["JOBFLEET_BACKOFF_MAX_SECONDS"] = "0.05"  # the overflowing job's retries come at once
    # One attempt each, but for the result: a retry would show it was not final.
    jobs = {
        name: jobfleet.enqueue(conn, name, max_attempts=3 if name == "surrogate_result" else 1)
        for name in (
            "nul_error",
            "surrogate_error",
            "huge_error",
            "nul_progress",
            "nan_progress",
            "surrogate_result",
        )
    }
    # A row from before enqueue refused such numbers: its retry delay once overflowed double
    # precision in the statement that records a whole batch of outcomes.
    jobs["backoff_overflow"] = jobfleet.enqueue(conn, "always_fails", max_attempts=3)
    conn.execute(
        "UPDATE jobs SET backoff = 'exponential', backoff_seconds = 1e308 WHERE id = %s",
        (jobs["backoff_overflow"],),
    )
    node = fleet("a", "--workers", "2", "--handlers", "poison", env=env)
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == 0,
        timeout=60,
        what=f"every poisonous job to end; node log:\n{node.log()[-3000:]}",
    )
    state, attempt, error, _ = _job(conn, jobs["nul_error"])
    assert (state, attempt) == ("dead", 1)
    assert "ValueError: bad\ufffdbyte" in error
    state, _, error, _ = _job(conn, jobs["surrogate_error"])
    assert state == "dead" and "ValueError: lone \ufffd surrogate" in error
    state, _, error, _ = _job(conn, jobs["huge_error"])
    assert state == "dead"
    assert len(error.encode()) <= 64 * 1024  # JOBFLEET_MAX_ERROR_BYTES's default
    assert error.startswith("Traceback") and error.endswith("x the end")
    assert "bytes cut: over the 65536-byte limit" in error
    stored = scalar(
        conn,
        "SELECT error FROM job_attempts WHERE job_id = %s",
        (jobs["huge_error"],),
    )
    assert stored == error
    state, _, _, _ = _job(conn, jobs["nul_progress"])
    assert state == "succeeded"
    state, _, _, _ = _job(conn, jobs["nan_progress"])
    assert state == "succeeded"
    # A result that cannot be stored ends the job at once: its handler has run, and running
    # it again could repeat what it did.
    state, attempt, error, _ = _job(conn, jobs["surrogate_result"])
    assert (state, attempt) == ("dead", 1)
    assert "cannot be stored" in error or "could not be stored" in error
    state, attempt, error, _ = _job(conn, jobs["backoff_overflow"])
    assert (state, attempt) == ("dead", 3)
    assert "RuntimeError: try again" in error

    assert node.proc.poll() is None, node.log()
    assert "a supervisor loop failed" not in node.log()
    after = jobfleet.enqueue(conn, "fine", {"still": "working"})
    wait_until(
        lambda: _job(conn, after)[0] == "succeeded", timeout=30, what="a job after the poison"
    )


def test_progress_messages_are_stored_cleaned(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(
        tmp_path,
        "slow_progress",
        "import time\n"
        "from jobfleet.worker import handler\n"
        "@handler('slow_progress')\n"
        "def slow_progress(payload, ctx):\n"
        "    ctx.progress(0.5, 'half\\x00way \\ud800')\n"
        "    while not ctx.cancelled():\n"
        "        time.sleep(0.01)\n",
    )
    job = jobfleet.enqueue(conn, "slow_progress")
    node = fleet("a", "--workers", "1", "--handlers", "slow_progress", env=env)
    progress = wait_until(
        lambda: _job(conn, job)[3], timeout=30, what=f"progress; log:\n{node.log()[-2000:]}"
    )
    assert progress == {"fraction": 0.5, "message": "half\ufffdway \ufffd"}


def test_the_retry_delay_is_bounded_whatever_the_row_holds(
    conn: psycopg.Connection[Any],
) -> None:
    for base in ("1e308", "Infinity", "NaN", "-5", "1e-300"):
        for strategy in ("exponential", "linear", "fixed", None):
            delay = scalar(
                conn,
                "SELECT jobfleet_backoff_seconds(%s, 1000, %s::float8, 3600)",
                (strategy, base),
            )
            assert 0 <= delay <= 3600, (strategy, base, delay)
    assert scalar(conn, "SELECT jobfleet_backoff_seconds('fixed', 1, 10, 'Infinity')") == 10
    huge_cap = scalar(conn, "SELECT jobfleet_backoff_seconds('fixed', 1, 1e308, 1e308)")
    assert huge_cap == 315360000  # ten years: now() + that is always a timestamp


def test_what_a_failure_means_for_its_job_is_decided_in_one_place(
    conn: psycopg.Connection[Any],
) -> None:
    def after(cancelled: bool, final: bool, attempt: int, max_attempts: int) -> str:
        return str(
            scalar(
                conn,
                "SELECT jobfleet_state_after_failure(%s, %s, %s, %s)",
                (cancelled, final, attempt, max_attempts),
            )
        )

    assert after(False, False, 1, 3) == "queued"
    assert after(False, False, 3, 3) == "dead"
    assert after(False, True, 1, 3) == "dead"
    assert after(True, False, 1, 3) == "cancelled"
    assert after(True, True, 3, 3) == "cancelled"  # a cancel request wins


THREADS = """
import threading, time
from jobfleet.worker import handler

@handler("chatty")
def chatty(payload, ctx):
    # The thread outlives the handler: its progress goes out while the result does.
    end = time.monotonic() + 1.0

    def report():
        while time.monotonic() < end:
            ctx.progress(1.0, "p" * 4000)  # 1.0: never throttled

    threading.Thread(target=report, daemon=True).start()
    time.sleep(0.2)
    return "r" * 900_000

@handler("garbler")
def garbler(payload):
    import gc
    loop = next(o for o in gc.get_objects() if type(o).__name__ == "ChildLoop")
    loop.sock.sendall(b"\\x00\\x00\\x00\\x07garbage")
    time.sleep(60)
"""


def test_progress_from_a_handlers_own_threads_never_garbles_the_channel(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "threads", THREADS)
    jobs = jobfleet.enqueue_many(conn, "chatty", [None] * 8, max_attempts=1)
    node = fleet("a", "--workers", "2", "--handlers", "threads", "--burst", env=env)
    assert node.wait(60) == 0, node.log()[-3000:]
    states = scalar(conn, "SELECT array_agg(DISTINCT state) FROM jobs WHERE id = ANY(%s)", (jobs,))
    assert states == ["succeeded"], node.log()[-3000:]


def test_a_worker_that_sends_garbage_is_killed_and_its_job_recorded(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "threads", THREADS)
    job = jobfleet.enqueue(conn, "garbler", max_attempts=1)
    after = jobfleet.enqueue(conn, "chatty")
    node = fleet("a", "--workers", "1", "--handlers", "threads", env=env)
    wait_until(lambda: _job(conn, job)[0] == "dead", timeout=30, what="the garbling job to end")
    error = _job(conn, job)[2]
    assert "worker sent a message the supervisor cannot read" in error, error
    wait_until(lambda: _job(conn, after)[0] == "succeeded", timeout=30, what="the next job")
    assert node.proc.poll() is None


BATCH_MATES = """
import os
from jobfleet.worker import handler

@handler("side")
def side(payload):
    with open(payload["file"], "a") as f:
        f.write("ran\\n")

@handler("die")
def die(payload):
    with open(payload["file"], "a") as f:
        f.write("died\\n")
    os._exit(3)
"""


def test_a_job_that_finished_before_its_worker_died_is_recorded_not_released(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    """Its outcome was still in the worker when it died: the job ran, so its attempt is spent
    and recorded (and retried), never handed back as if it had not run."""
    env = handler_module(tmp_path, "mates", BATCH_MATES)
    ran, died = tmp_path / "ran.txt", tmp_path / "died.txt"
    side = jobfleet.enqueue(conn, "side", {"file": str(ran)}, priority=10)
    die = jobfleet.enqueue(conn, "die", {"file": str(died)}, priority=9, max_attempts=1)
    # One worker, nothing learned yet: the two go out together, side first.
    node = fleet("a", "--workers", "1", "--handlers", "mates", env=env)
    wait_until(lambda: _job(conn, side)[0] == "succeeded", timeout=30, what="side to succeed")
    # The job that killed its worker ran once, its one attempt spent: dead, never run again.
    wait_until(lambda: _job(conn, die)[0] == "dead", timeout=30, what="die to be dead")
    assert died.read_text().count("died") == 1
    outcomes = conn.execute(
        "SELECT attempt, outcome, error FROM job_attempts WHERE job_id = %s ORDER BY attempt",
        (side,),
    ).fetchall()
    # It ran twice (at least once, as promised), and both runs are on the record.
    assert ran.read_text().count("ran") == 2
    assert [o[:2] for o in outcomes] == [(1, "crashed"), (2, "succeeded")], outcomes
    assert "after this job had finished" in outcomes[0][2]
    assert node.proc.poll() is None
