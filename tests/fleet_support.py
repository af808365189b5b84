"""What the fleet tests share: short timings and a few ways to look at jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

import jobfleet
from tests.conftest import scalar, wait_until

# Short leases and beats so recovery happens within seconds.
FAST = {
    "JOBFLEET_LEASE_SECONDS": "2",
    "JOBFLEET_HEARTBEAT_SECONDS": "0.2",
    "JOBFLEET_REAPER_INTERVAL_SECONDS": "0.5",
    "JOBFLEET_KILL_GRACE_SECONDS": "0.3",
    "JOBFLEET_GRACE_SECONDS": "10",
}


def running_on(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    return scalar(
        conn,
        "SELECT split_part(locked_by, '/', 1) FROM jobs WHERE id = %s AND state = 'running'",
        (job_id,),
    )


def handler_module(tmp_path: Any, name: str, source: str) -> dict[str, str]:
    """Write a user's handler module; return the environment a supervisor needs to import it."""
    (tmp_path / f"{name}.py").write_text(source)
    return {**FAST, "PYTHONPATH": str(tmp_path)}


# A handler that says which worker runs it: it writes its process id to payload["pid_file"]
# (whole, by a rename) before anything else, then sleeps. The job's `running` state is no such
# sign: it is set by the claim, and a job claimed before its node's worker was up goes back.
HANG = (
    "import os, threading\n"
    "from jobfleet.worker import handler\n"
    "@handler('hang')\n"
    "def hang(payload, ctx):\n"
    "    if ctx.attempt <= payload.get('attempts', 1):\n"
    "        path = payload['pid_file']\n"
    "        with open(path + '.part', 'w') as f:\n"
    "            f.write(str(os.getpid()))\n"
    "        os.rename(path + '.part', path)\n"
    "        threading.Event().wait(payload['seconds'])\n"
)


def hang_job(conn: psycopg.Connection[Any], tmp_path: Any, **options: Any) -> tuple[int, Any]:
    """Enqueue a `hang` job (HANG's module in tmp_path) for 120 s; its id and its pid file."""
    pid_file = tmp_path / "hang.pid"
    payload = {"pid_file": str(pid_file), "seconds": 120}
    return jobfleet.enqueue(conn, "hang", payload, **options), pid_file


def worker_running(pid_file: Any) -> int:
    """The process id of the worker that started the hang job, once it has."""
    return int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="a worker"))


def running_count(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'running'"))


def attempts(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT attempt, outcome, node, error FROM job_attempts WHERE job_id = %s ORDER BY "
            "attempt",
            (job_id,),
        )
    ]


def double_successes(conn: psycopg.Connection[Any]) -> int:
    """Jobs with more than one succeeded attempt: must always be none."""
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE "
            "outcome = 'succeeded' GROUP BY job_id HAVING count(*) > 1) d",
        )
    )


def deepest_overlap(intervals: Sequence[tuple[Any, Any]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    depth = deepest = 0
    for _, step in events:
        depth += step
        deepest = max(deepest, depth)
    return deepest
