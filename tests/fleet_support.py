"""What the fleet tests share: short timings and a few ways to look at jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from tests.conftest import scalar

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
