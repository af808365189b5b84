"""The processing side's queue operations: claim a batch, record outcomes, release.

Each is one statement for a whole batch. Recording is fenced on (id, attempt, running): the
outcome of an attempt that lost its lease is dropped, never written over the newer attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.queries import sql
from jobfleet.settings import Settings, settings


def claim(
    conn: Any,
    *,
    node: str,
    types: Sequence[str],
    queues: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
) -> list[ClaimedJob]:
    """Claim up to `limit` ready jobs of `types` (in `queues`, or any queue when None)."""
    rows = conn.execute(
        sql("claim"),
        {
            "node": node,
            "types": list(types),
            "queues": None if queues is None else list(queues),
            "limit": limit,
            "lease_seconds": lease_seconds,
        },
    ).fetchall()
    jobs = [ClaimedJob(*row) for row in rows]
    # The UPDATE returns rows in no set order; run them in pickup order.
    jobs.sort(key=lambda j: (-j.priority, j.id))
    return jobs


@dataclass(frozen=True)
class Recorded:
    written: int  # outcomes that matched their attempt and were stored
    late: int  # outcomes of attempts that no longer held their job: dropped


def record(
    conn: Any, node: str, results: Sequence[AttemptResult], config: Settings | None = None
) -> Recorded:
    """Store a batch of outcomes in at most two statements."""
    config = config or settings()
    ok = [r for r in results if r.outcome == "succeeded"]
    bad = [r for r in results if r.outcome != "succeeded"]
    written = 0
    if ok:
        written += len(
            conn.execute(
                sql("complete_batch"),
                {
                    "node": node,
                    "ids": [r.job_id for r in ok],
                    "attempts": [r.attempt for r in ok],
                    "results": [r.result_json for r in ok],
                    "pids": [r.pid for r in ok],
                    "started": [r.started_at for r in ok],
                    "finished": [r.finished_at for r in ok],
                },
            ).fetchall()
        )
    if bad:
        written += len(
            conn.execute(
                sql("fail_batch"),
                {
                    "node": node,
                    "ids": [r.job_id for r in bad],
                    "attempts": [r.attempt for r in bad],
                    "outcomes": [r.outcome for r in bad],
                    "errors": [r.error for r in bad],
                    "finals": [r.final for r in bad],
                    "backoffs": [r.backoff for r in bad],
                    "backoff_seconds": [r.backoff_seconds for r in bad],
                    "pids": [r.pid for r in bad],
                    "started": [r.started_at for r in bad],
                    "finished": [r.finished_at for r in bad],
                    "backoff_base": config.backoff_base_seconds,
                    "backoff_max": config.backoff_max_seconds,
                },
            ).fetchall()
        )
    return Recorded(written=written, late=len(results) - written)


def release(conn: Any, jobs: Sequence[ClaimedJob]) -> int:
    """Put claimed-but-unstarted jobs back, as if never claimed; return how many."""
    if not jobs:
        return 0
    rows = conn.execute(
        sql("release_batch"),
        {"ids": [j.id for j in jobs], "attempts": [j.attempt for j in jobs]},
    ).fetchall()
    return len(rows)
