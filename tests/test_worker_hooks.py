"""Worker lifecycle hooks in a handler module: on_worker_start runs in each worker after the
fork (its resource is that process's own), on_worker_stop when a worker leaves cleanly, and a
start hook that raises is reported with its traceback and its worker not used."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg

import jobfleet
from tests.conftest import wait_until
from tests.fleet_support import handler_module

HOOKED = """
import os
from jobfleet.worker import handler, on_worker_start, on_worker_stop

resource = None

@on_worker_start
def open_pool():
    global resource
    resource = f"pool-of-{os.getpid()}"

@on_worker_stop
def close_pool():
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"closed {resource}\\n")

@handler("whoami")
def whoami(payload):
    return {"resource": resource, "pid": os.getpid()}
"""

BROKEN = """
from jobfleet.worker import handler, on_worker_start

@on_worker_start
def connect_to_nowhere():
    raise RuntimeError("the app's database is not configured")

@handler("never")
def never(payload):
    return "ran"
"""


def test_each_worker_has_its_own_hook_made_resource_and_closes_it(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Path
) -> None:
    env = handler_module(tmp_path, "hooked", HOOKED)
    env["HOOK_LOG"] = str(tmp_path / "hooks.log")
    jobs = jobfleet.enqueue_many(conn, "whoami", [None] * 40)
    node = fleet("a", "--workers", "2", "--handlers", "hooked", "--burst", env=env)
    assert node.wait(60) == 0, node.log()[-2000:]
    results = [r[0] for r in conn.execute("SELECT result FROM jobs WHERE id = ANY(%s)", (jobs,))]
    assert len(results) == 40
    assert all(r["resource"] == f"pool-of-{r['pid']}" for r in results), results
    pids = {r["pid"] for r in results}
    closed = set((tmp_path / "hooks.log").read_text().split("\n")) - {""}
    assert {f"closed pool-of-{pid}" for pid in pids} <= closed
    assert node.pid not in pids  # the supervisor itself never ran a hook's job


def test_a_start_hook_that_raises_is_reported_and_its_worker_not_used(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Path
) -> None:
    env = handler_module(tmp_path, "broken", BROKEN)
    job = jobfleet.enqueue(conn, "never")
    node = fleet("a", "--workers", "1", "--handlers", "broken", env=env)
    wait_until(
        lambda: "its on_worker_start hook failed" in node.log(),
        timeout=30,
        what="the failed start hook to be reported",
    )
    log = node.log()
    assert "a worker start hook failed; this worker is not used" in log
    assert "Traceback" in log and "RuntimeError: the app's database is not configured" in log
    assert node.proc.poll() is None
    node.signal(signal.SIGTERM)
    assert node.wait(30) == 0
    # Claimed now and then by a worker that then failed its hook, but never run: once the node
    # has drained it is back in the queue with no attempt spent and none recorded.
    state, attempt = conn.execute(
        "SELECT state, attempt FROM jobs WHERE id = %s", (job,)
    ).fetchone()
    assert (state, attempt) == ("queued", 0)
    assert conn.execute("SELECT count(*) FROM job_attempts").fetchone() == (0,)
