"""The processing side's queue operations: claim a batch, record outcomes, release.

Each is one statement for a whole batch. Recording is fenced on (id, attempt, running): the
outcome of an attempt that lost its lease is dropped, never written over the newer attempt.
The statements are built once here and run by a blocking (`claim`, `record`, `release`) or an
asyncio connection (`claim_async`, `record_async`, `release_async`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.queries import sql
from jobfleet.settings import Settings, settings

Statement = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Recorded:
    written: int  # outcomes that matched their attempt and were stored
    late: int  # outcomes of attempts that no longer held their job: dropped


def claim_statement(
    *,
    holder: str,
    types: Sequence[str],
    queues: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
) -> Statement:
    """Claim up to `limit` ready jobs of `types` (in `queues`, or any queue when None) for
    `holder`, the lease owner written to `locked_by`."""
    return sql("claim"), {
        "node": holder,
        "types": list(types),
        "queues": None if queues is None else list(queues),
        "limit": limit,
        "lease_seconds": lease_seconds,
    }


def claimed_jobs(rows: Sequence[Sequence[Any]]) -> list[ClaimedJob]:
    jobs = [ClaimedJob(*row) for row in rows]
    # The UPDATE returns rows in no set order; run them in pickup order.
    jobs.sort(key=lambda j: (-j.priority, j.id))
    return jobs


def record_statements(
    node: str, results: Sequence[AttemptResult], config: Settings | None = None
) -> list[Statement]:
    """At most two statements: the successes, and everything else."""
    config = config or settings()
    ok = [r for r in results if r.outcome == "succeeded"]
    bad = [r for r in results if r.outcome != "succeeded"]
    statements: list[Statement] = []
    if ok:
        statements.append(
            (
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
            )
        )
    if bad:
        statements.append(
            (
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
            )
        )
    return statements


def release_statement(jobs: Sequence[tuple[int, int]]) -> Statement:
    """Claimed-but-unstarted (id, attempt) pairs back to the queue, no attempt spent."""
    return sql("release_batch"), {
        "ids": [job_id for job_id, _ in jobs],
        "attempts": [attempt for _, attempt in jobs],
    }


# -- blocking connection ------------------------------------------------------------------


def claim(conn: Any, **options: Any) -> list[ClaimedJob]:
    query, params = claim_statement(**options)
    return claimed_jobs(conn.execute(query, params).fetchall())


def record(
    conn: Any, node: str, results: Sequence[AttemptResult], config: Settings | None = None
) -> Recorded:
    written = sum(
        len(conn.execute(query, params).fetchall())
        for query, params in record_statements(node, results, config)
    )
    return Recorded(written=written, late=len(results) - written)


def release(conn: Any, jobs: Sequence[ClaimedJob]) -> int:
    if not jobs:
        return 0
    query, params = release_statement([(j.id, j.attempt) for j in jobs])
    return len(conn.execute(query, params).fetchall())


# -- asyncio connection -------------------------------------------------------------------


async def claim_async(conn: Any, **options: Any) -> list[ClaimedJob]:
    query, params = claim_statement(**options)
    cur = await conn.execute(query, params)
    return claimed_jobs(await cur.fetchall())


async def record_async(
    conn: Any, node: str, results: Sequence[AttemptResult], config: Settings | None = None
) -> Recorded:
    written = 0
    for query, params in record_statements(node, results, config):
        cur = await conn.execute(query, params)
        written += len(await cur.fetchall())
    return Recorded(written=written, late=len(results) - written)


async def release_async(conn: Any, jobs: Sequence[tuple[int, int]]) -> int:
    if not jobs:
        return 0
    query, params = release_statement(jobs)
    cur = await conn.execute(query, params)
    return len(await cur.fetchall())
