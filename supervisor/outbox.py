"""What the supervisor has to write: outcomes, released jobs and progress, written in batches.

Nothing is lost when the database is away: a failed flush puts everything back, and the next
flush writes it (fenced, so an outcome whose lease lapsed meanwhile is dropped, not applied).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jobfleet.jobs import AttemptResult, Success
from jobfleet.queries import sql
from jobfleet.settings import Settings
from jobfleet.store import Statement, record_statements, release_statement
from jobfleet.supervisor.database import ManagedConnection


@dataclass(frozen=True)
class Flushed:
    late: int  # outcomes dropped: their attempt had been replaced
    requeued: bool  # jobs went back to the queue (failures to retry, releases)
    succeeded: int = 0  # successes written (or dropped as late)
    failures: tuple[AttemptResult, ...] = ()  # the other outcomes written
    # (id, type, queue, state now, outcome, seconds until a retry falls due) of each failure
    # written: retried, dead or cancelled.
    failed_rows: tuple[tuple[Any, ...], ...] = ()


class Outbox:
    def __init__(self, on_arrival: Callable[[], None] | None = None) -> None:
        self.on_arrival = on_arrival  # called when something arrives in an empty outbox
        self.successes: list[Success] = []
        self.results: list[AttemptResult] = []  # everything that did not succeed
        self.releases: list[tuple[int, int]] = []
        self.progress: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.since = 0.0  # when the oldest of what waits arrived (monotonic)

    def __bool__(self) -> bool:
        return bool(self.successes or self.results or self.releases or self.progress)

    def _arriving(self) -> None:
        if not self:
            self.since = time.monotonic()
            if self.on_arrival is not None:
                self.on_arrival()

    @property
    def only_successes(self) -> bool:
        """Nothing waits but successes (failures, releases and progress go out at once)."""
        return not (self.results or self.releases or self.progress)

    def add_success(self, success: Success) -> None:
        self._arriving()
        self.successes.append(success)

    def add_successes(self, successes: list[Success]) -> None:
        self._arriving()
        self.successes.extend(successes)

    def add_result(self, result: AttemptResult) -> None:
        """Queue an outcome that is not a success."""
        self._arriving()
        self.results.append(result)

    @property
    def waiting(self) -> int:
        return len(self.successes) + len(self.results)

    def job_ids(self) -> list[int]:
        return [s[0] for s in self.successes] + [r.job_id for r in self.results]

    def add_releases(self, jobs: Iterable[tuple[int, int]]) -> None:
        jobs = list(jobs)
        if jobs:
            self._arriving()
            self.releases.extend(jobs)

    def add_progress(self, job_id: int, attempt: int, fraction: float, text: str | None) -> None:
        self._arriving()
        self.progress[(job_id, attempt)] = (fraction, text)

    async def flush(self, db: ManagedConnection, node: str, config: Settings) -> Flushed:
        """Write everything waiting in one round trip (pipelined)."""
        ok, bad, releases, reports = self.successes, self.results, self.releases, self.progress
        self.successes, self.results, self.releases, self.progress = [], [], [], {}
        statements = record_statements(node, ok, bad, config)
        recording = len(statements)
        if releases:
            statements.append(release_statement(releases))
        if reports:
            statements.append(progress_statement(reports))
        try:
            rows = await db.run(lambda conn: run_pipelined(conn, statements))
        except BaseException:
            self.successes, self.results = ok + self.successes, bad + self.results
            self.releases = releases + self.releases
            self.progress = {**reports, **self.progress}
            raise
        written = sum(len(r) for r in rows[:recording])
        return Flushed(
            late=len(ok) + len(bad) - written,
            requeued=bool(bad or releases),
            succeeded=len(ok),
            failures=tuple(bad),
            failed_rows=tuple(rows[recording - 1]) if bad else (),
        )


def progress_statement(reports: dict[tuple[int, int], tuple[float, str | None]]) -> Statement:
    return sql("save_progress"), {
        "ids": [k[0] for k in reports],
        "attempts": [k[1] for k in reports],
        "fractions": [v[0] for v in reports.values()],
        "messages": [v[1] for v in reports.values()],
    }


async def run_pipelined(conn: Any, statements: list[Statement]) -> list[list[Any]]:
    """Run the statements in one round trip; return each one's rows ([] for none)."""
    if len(statements) == 1:
        cursors = [await conn.execute(*statements[0], prepare=False)]
    else:
        async with conn.pipeline():
            cursors = [await conn.execute(q, p, prepare=False) for q, p in statements]
    return [await cur.fetchall() if cur.description else [] for cur in cursors]
