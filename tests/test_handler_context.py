"""What handlers see and return: progress while running, results, bad results."""

from __future__ import annotations

from typing import Any

import psycopg

import jobfleet
from tests.conftest import scalar, wait_until
from tests.fleet_support import FAST, handler_module


def progress_of(conn: psycopg.Connection[Any], job_id: int) -> float | None:
    value = scalar(
        conn,
        "SELECT progress->>'fraction' FROM jobs WHERE id = %s AND state = 'running'",
        (job_id,),
    )
    return None if value is None else float(value)


def test_progress_grows_while_the_job_runs(conn: psycopg.Connection[Any], fleet: Any) -> None:
    job = jobfleet.enqueue(conn, "progress", {"steps": 8, "seconds": 0.4})
    fleet("a", "--workers", "1", env=FAST)
    first = wait_until(lambda: progress_of(conn, job), what="a first progress report")
    later = wait_until(
        lambda: (p := progress_of(conn, job)) is not None and p > first and p,
        what="progress to grow",
    )
    assert 0 < first < later < 1
    message = scalar(conn, "SELECT progress->>'message' FROM jobs WHERE id = %s", (job,))
    assert message.startswith("step ")
    assert jobfleet.wait(job, timeout=30) == {"steps_done": 8}


def test_unstorable_result_fails_the_attempt_saying_why(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(
        tmp_path,
        "odd_handlers",
        "from jobfleet.worker import handler\n"
        "@handler('odd', max_attempts=1)\n"
        "def odd(payload):\n"
        "    return {'when': object()}\n",
    )
    job = jobfleet.enqueue(conn, "odd", max_attempts=1)
    node = fleet("a", "--workers", "1", "--burst", "--handlers", "odd_handlers", env=env)
    assert node.wait(60) == 0, node.log()
    state, error = conn.execute("SELECT state, error FROM jobs WHERE id = %s", (job,)).fetchone()
    assert state == "dead"
    assert "return value cannot be stored" in error and "not JSON-serialisable" in error
