"""Workers under a real supervisor, with real processes and signals: children die, hang,
overrun, get cancelled, are recycled; the node drains."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg

import jobfleet
from tests.conftest import all_finished, scalar, wait_until
from tests.fleet_support import (
    FAST,
    HANG,
    attempts,
    handler_module,
    hang_job,
    running_on,
    worker_running,
)


def test_killed_child_is_replaced_and_its_job_retried(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # The first attempt outlives any scheduling delay before the kill; the retry is quick.
    env = handler_module(tmp_path, "hangs", HANG)
    job, pid_file = hang_job(conn, tmp_path, backoff="fixed:0")
    node = fleet("a", "--workers", "1", "--handlers", "hangs", env=env)
    child = worker_running(pid_file)
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: attempts(conn, job), what="the crashed attempt")
    [(attempt, outcome, node_name, error)] = attempts(conn, job)[:1]
    assert (attempt, outcome, node_name) == (1, "crashed", "a")
    assert "killed by signal 9" in error
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs") == "succeeded",
        timeout=30,
        what="the retry to succeed",
    )
    assert [a[:2] for a in attempts(conn, job)] == [(1, "crashed"), (2, "succeeded")]
    replacement = wait_until(node.children, what="a replacement worker")
    assert child not in replacement


def test_crashing_and_failing_jobs_end_dead_with_their_cause(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    by_signal = jobfleet.enqueue(conn, "crash", {"signal": 9}, max_attempts=2, backoff="fixed:0")
    by_exit = jobfleet.enqueue(conn, "crash", {"exit_code": 3}, max_attempts=2, backoff="fixed:0")
    fails = jobfleet.enqueue(conn, "fail", {"message": "nope"}, max_attempts=2, backoff="fixed:0")
    fine = jobfleet.enqueue_many(conn, "echo", list(range(20)))
    node = fleet("a", "--workers", "2", "--burst", env=FAST)
    assert node.wait(60) == 0, node.log()
    states = dict(conn.execute("SELECT id, state FROM jobs").fetchall())
    assert [states[i] for i in (by_signal, by_exit, fails)] == ["dead"] * 3
    assert all(states[i] == "succeeded" for i in fine)
    assert [a[1] for a in attempts(conn, by_signal)] == ["crashed", "crashed"]
    assert all("killed by signal 9" in a[3] for a in attempts(conn, by_signal))
    assert all("exit code 3" in a[3] for a in attempts(conn, by_exit))
    assert [a[1] for a in attempts(conn, fails)] == ["failed", "failed"]
    assert "nope" in attempts(conn, fails)[1][3]
    # A finished job keeps the start of its last attempt, as the attempt does.
    last_starts = conn.execute(
        "SELECT j.started_at = a.started_at FROM jobs j JOIN job_attempts a "
        "ON a.job_id = j.id AND a.attempt = j.attempt WHERE j.id = ANY(%s)",
        ([by_signal, by_exit, fails],),
    ).fetchall()
    assert last_starts == [(True,)] * 3


def test_job_over_its_timeout_is_killed_and_recorded(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 30}, timeout=0.5, max_attempts=1)
    node = fleet("a", "--workers", "1", "--burst", env=FAST)
    assert node.wait(60) == 0, node.log()
    [(attempt, outcome, _, error)] = attempts(conn, job)
    assert (attempt, outcome) == (1, "timed_out")
    assert error.startswith("timeout after 0.5 s")
    ran = scalar(
        conn, "SELECT finished_at - started_at FROM job_attempts WHERE job_id = %s", (job,)
    )
    assert ran.total_seconds() >= 0.5  # the attempt's start is when the job started
    assert scalar(conn, "SELECT state FROM jobs") == "dead"


def test_silent_child_is_killed_and_replaced(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "hangs", HANG)
    job, pid_file = hang_job(conn, tmp_path, max_attempts=1)
    node = fleet("a", "--workers", "1", "--handlers", "hangs", env=env)
    child = worker_running(pid_file)
    os.kill(child, signal.SIGSTOP)  # hung: no heartbeat any more
    wait_until(lambda: attempts(conn, job), timeout=30, what="the hung attempt to be recorded")
    [(_, outcome, _, error)] = attempts(conn, job)
    assert outcome == "crashed" and "no heartbeat" in error
    wait_until(lambda: node.children() and child not in node.children(), what="a replacement")


def test_sigterm_drains_running_jobs_and_releases_the_rest(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    ids = jobfleet.enqueue_many(conn, "progress", [{"steps": 4, "seconds": 0.25}] * 6)
    node = fleet("a", "--workers", "1", env=FAST)
    # Started in its worker for certain (its first progress report is in), not only claimed:
    # a claimed job the worker has not begun is handed back by the drain, as it should be.
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE progress IS NOT NULL"),
        what="a job to report progress",
    )
    node.signal(signal.SIGTERM)
    assert node.wait(30) == 0, node.log()
    rows = conn.execute("SELECT state, attempt FROM jobs ORDER BY id").fetchall()
    assert len(rows) == len(ids)
    assert ("succeeded", 1) in rows  # the running job was allowed to finish
    assert all(r in (("succeeded", 1), ("queued", 0)) for r in rows), rows
    assert scalar(conn, "SELECT count(*) FROM nodes") == 0
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE outcome <> 'succeeded'") == 0


def test_crash_loop_slows_restarts_and_the_node_survives(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    crashes = jobfleet.enqueue_many(conn, "crash", [{"signal": 9}] * 12, max_attempts=1)
    node = fleet("a", "--workers", "2", env=FAST)
    wait_until(lambda: all_finished(conn), timeout=90, what="every crash job to end")
    assert "workers keep dying" in node.log()
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'dead'") == len(crashes)
    after = jobfleet.enqueue(conn, "echo", {"still": "alive"})
    assert jobfleet.wait(after, timeout=60) == {"still": "alive"}
    assert node.proc.poll() is None


def test_worker_count_follows_ttin_and_ttou(conn: psycopg.Connection[Any], fleet: Any) -> None:
    node = fleet("a", "--workers", "1", env=FAST)
    wait_until(lambda: len(node.children()) == 1, what="one worker")
    node.signal(signal.SIGTTIN)  # one at a time: identical pending signals merge into one
    wait_until(lambda: len(node.children()) == 2, what="two workers")
    node.signal(signal.SIGTTIN)
    wait_until(lambda: len(node.children()) == 3, what="three workers")
    wait_until(lambda: scalar(conn, "SELECT workers FROM nodes") == 3, what="the registry")
    node.signal(signal.SIGTTOU)
    wait_until(lambda: len(node.children()) == 2, what="two workers again")


def test_children_are_recycled_after_max_jobs(conn: psycopg.Connection[Any], fleet: Any) -> None:
    ids = jobfleet.enqueue_many(conn, "noop", list(range(20)))
    node = fleet("a", "--workers", "1", "--burst", env={**FAST, "JOBFLEET_MAX_JOBS_PER_CHILD": "5"})
    assert node.wait(60) == 0, node.log()
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == len(ids)
    pids = scalar(conn, "SELECT count(DISTINCT pid) FROM job_attempts")
    assert pids >= 4  # a fresh child every five jobs
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE outcome <> 'succeeded'") == 0


def test_children_are_recycled_above_the_memory_ceiling(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [{"n": i} for i in range(6)])
    # Any worker is above 1 MiB resident: each leaves after its first batch.
    node = fleet("a", "--workers", "1", "--burst", env={**FAST, "JOBFLEET_MAX_CHILD_RSS_MB": "1"})
    assert node.wait(60) == 0, node.log()
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == len(ids)
    assert scalar(conn, "SELECT count(DISTINCT pid) FROM job_attempts") >= 2
    assert "worker died" not in node.log()


def test_handler_timeout_applies_to_jobs_enqueued_before_any_node(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(
        tmp_path,
        "slow_handlers",
        "import threading\n"
        "from jobfleet.worker import handler\n"
        "@handler('slow', timeout=0.5, max_attempts=1)\n"
        "def slow(payload):\n"
        "    threading.Event().wait(30)\n",
    )
    job = jobfleet.enqueue(conn, "slow")  # no node has published the type's defaults yet
    assert scalar(conn, "SELECT timeout_seconds FROM jobs") is None
    node = fleet("a", "--workers", "1", "--burst", "--handlers", "slow_handlers", env=env)
    assert node.wait(60) == 0, node.log()
    [(_, outcome, _, error)] = attempts(conn, job)
    assert outcome == "timed_out" and error.startswith("timeout after 0.5 s")


def test_cancelling_a_running_job_stops_it_and_replaces_its_worker(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    from jobfleet import admin

    job = jobfleet.enqueue(conn, "sleep", {"seconds": 60})
    node = fleet("a", "--workers", "1", env=FAST)
    wait_until(lambda: running_on(conn, job), what="the job to start")
    [child] = wait_until(node.children, what="a worker")
    assert admin.cancel(conn, job) == "running"
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs") == "cancelled",
        timeout=20,
        what="the job to end cancelled",
    )
    [(attempt, outcome, _, error)] = attempts(conn, job)
    assert (attempt, outcome) == (1, "cancelled") and "cancelled while running" in error
    wait_until(lambda: node.children() and node.children() != [child], what="a new worker")
    # Logged as what it was, not as a failure.
    logged = wait_until(lambda: "job attempt cancelled" in node.log() and node.log())
    assert f"job={job}" in logged and "job attempt failed" not in logged
