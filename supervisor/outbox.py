"""What the supervisor has to write: outcomes, released jobs and progress, written in batches.

Nothing is lost when the database is away: a failed flush puts everything back, and the next
flush writes it (fenced, so an outcome whose lease lapsed meanwhile is dropped, not applied).
Nothing a job carries can stop the node either: text is cleaned on the way in (errors and
progress lose NUL and lone surrogates, errors are cut to JOBFLEET_MAX_ERROR_BYTES), and a
batch that PostgreSQL still refuses on its data is written apart (see `_write_apart`): the rows
at fault are recorded as failed attempts saying what could not be stored, the rest as they
were.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from jobfleet.completion import SuccessColumns, success_rows
from jobfleet.jobs import SUCCESS_FINISHED, SUCCESS_STARTED, AttemptResult, Success
from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.settings import Settings
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection, StatementError
from jobfleet.supervisor.store import (
    Statement,
    failure_statement,
    record_statements,
    release_statement,
    run_pipelined,
    success_statement,
)
from jobfleet.text import clean_text

log = get_logger("jobfleet.supervisor")
Row = TypeVar("Row")
# Failures are logged one by one (they are the exception), but never more than this a batch.
FAILURES_LOGGED_PER_FLUSH = 20
# How much of an error that could not be stored is kept in the note that replaces it.
UNSTORED_ERROR_KEPT_BYTES = 2048


class Failed(NamedTuple):
    """A failed attempt as written (a row of fail_batch): what became of its job."""

    id: int
    type: str
    queue: str
    state: str  # queued (to retry), dead or cancelled
    outcome: str
    due_in: float | None  # seconds until a retry falls due


@dataclass(frozen=True)
class Flushed:
    late: int  # outcomes dropped: their attempt had been replaced
    requeued: bool  # jobs went back to the queue (failures to retry, releases)
    succeeded: int = 0  # successes written (or dropped as late)
    failures: tuple[AttemptResult, ...] = ()  # the other outcomes written
    failed_rows: tuple[Failed, ...] = ()  # each failure written: retried, dead or cancelled
    # Statements PostgreSQL refused on their data (each isolated; see Outbox._write_apart),
    # and rows that could not be written even as a plain failure (left to their leases).
    statement_errors: int = 0
    dropped: int = 0


def log_failures(node: str, failures: Sequence[AttemptResult]) -> None:
    """A write's failed and cancelled attempts, one line each (at most
    FAILURES_LOGGED_PER_FLUSH), with the last line of each error."""
    for failure in failures[:FAILURES_LOGGED_PER_FLUSH]:
        last_line = (failure.error or "").strip().splitlines()[-1:] or [""]
        log.info(
            "job attempt cancelled" if failure.outcome == "cancelled" else "job attempt failed",
            extra={
                "node": node,
                "job": failure.job_id,
                "attempt": failure.attempt,
                "outcome": failure.outcome,
                "worker": failure.pid,
                "error": last_line[0][:200],
            },
        )
    if len(failures) > FAILURES_LOGGED_PER_FLUSH:
        log.info(
            "more attempts failed or were cancelled",
            extra={"node": node, "count": len(failures) - FAILURES_LOGGED_PER_FLUSH},
        )


class Outbox:
    def __init__(
        self, on_arrival: Callable[[], None] | None = None, *, max_error_bytes: int = 64 * 1024
    ) -> None:
        self.on_arrival = on_arrival  # called when something arrives in an empty outbox
        self.max_error_bytes = max_error_bytes
        self.successes: list[Success] = []
        # Successes as the children formatted them (protocol.done), with their jobs' ids.
        self.formatted: list[tuple[list[int], SuccessColumns]] = []
        self.results: list[AttemptResult] = []  # everything that did not succeed
        self.releases: list[tuple[int, int]] = []
        self.progress: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.since = 0.0  # when the oldest of what waits arrived (monotonic)
        self.latest: float | None = None  # when the newest outcome arrived, written or not

    def __bool__(self) -> bool:
        return bool(
            self.successes or self.formatted or self.results or self.releases or self.progress
        )

    def _arriving(self) -> None:
        if not self:
            self.since = time.monotonic()
            if self.on_arrival is not None:
                self.on_arrival()

    def _outcomes_arriving(self) -> None:
        self._arriving()
        self.latest = time.monotonic()

    @property
    def only_successes(self) -> bool:
        """Nothing waits but successes (failures, releases and progress go out at once)."""
        return not (self.results or self.releases or self.progress)

    def add_success(self, success: Success) -> None:
        self._outcomes_arriving()
        self.successes.append(success)

    def add_successes(self, successes: list[Success]) -> None:
        self._outcomes_arriving()
        self.successes.extend(successes)

    def add_formatted(self, ids: list[int], columns: SuccessColumns) -> None:
        """A batch of successes a child formatted for the write: `ids` are its jobs."""
        self._outcomes_arriving()
        self.formatted.append((ids, columns))

    def add_result(self, result: AttemptResult) -> None:
        """Queue an outcome that is not a success, its error made storable."""
        if result.error is not None:
            result.error = clean_text(result.error, self.max_error_bytes)
        self._outcomes_arriving()
        self.results.append(result)

    @property
    def waiting(self) -> int:
        return len(self.successes) + _count(self.formatted) + len(self.results)

    def job_ids(self) -> list[int]:
        return (
            [s[0] for s in self.successes]
            + [job_id for ids, _ in self.formatted for job_id in ids]
            + [r.job_id for r in self.results]
        )

    def add_releases(self, jobs: Iterable[tuple[int, int]]) -> None:
        jobs = list(jobs)
        if jobs:
            self._arriving()
            self.releases.extend(jobs)

    def add_progress(self, job_id: int, attempt: int, fraction: Any, text: Any) -> None:
        """Queue a progress report, made storable whatever a child sent: a fraction in
        [0, 1] (0 when it is not a number), text cleaned and cut."""
        try:
            fraction = min(1.0, max(0.0, float(fraction)))  # max() keeps 0.0 over NaN
        except (TypeError, ValueError):
            fraction = 0.0
        if text is not None:
            text = clean_text(str(text), self.max_error_bytes)
        self._arriving()
        self.progress[(job_id, attempt)] = (fraction, text)

    async def flush(
        self, db: ManagedConnection, node: str, config: Settings, *, holder: str
    ) -> Flushed:
        """Write everything waiting in one round trip (pipelined); if PostgreSQL refuses it
        on its data, write it apart instead. Every write is fenced on the attempt and on
        `holder`, the node run's lease holder (the claims' locked_by)."""
        ok, bad, releases, reports = self.successes, self.results, self.releases, self.progress
        formatted, succeeded = self.formatted, len(ok) + _count(self.formatted)
        self.successes, self.results, self.releases, self.progress = [], [], [], {}
        self.formatted = []
        statements = record_statements(
            node, ok, bad, config, holder=holder, formatted=[c for _, c in formatted]
        )
        recording = len(statements)
        if releases:
            statements.append(release_statement(releases, holder))
        if reports:
            statements.append(progress_statement(reports, holder))
        try:
            rows = await db.run(lambda conn: run_pipelined(conn, statements))
        except StatementError as exc:
            # The pipeline was one implicit transaction: none of it was written.
            log.error(
                "a batch write was refused on its data; writing its rows apart",
                extra={"node": node, "reason": str(exc)},
            )
            every = ok + [row for _, columns in formatted for row in success_rows(columns)]
            return await self._write_apart(db, node, holder, config, every, bad, releases, reports)
        except BaseException:
            self._put_back(ok, bad, releases, reports, formatted)
            raise
        written = sum(len(r) for r in rows[:recording])
        return Flushed(
            late=succeeded + len(bad) - written,
            requeued=bool(bad or releases),
            succeeded=succeeded,
            failures=tuple(bad),
            failed_rows=tuple(map(Failed._make, rows[recording - 1])) if bad else (),
        )

    def _put_back(
        self,
        ok: list[Success],
        bad: list[AttemptResult],
        releases: list[tuple[int, int]],
        reports: dict[tuple[int, int], tuple[float, str | None]],
        formatted: Sequence[tuple[list[int], SuccessColumns]] = (),
    ) -> None:
        self.successes, self.results = ok + self.successes, bad + self.results
        self.formatted = [*formatted, *self.formatted]
        self.releases = releases + self.releases
        self.progress = {**reports, **self.progress}

    async def _write_apart(
        self,
        db: ManagedConnection,
        node: str,
        holder: str,
        config: Settings,
        ok: list[Success],
        bad: list[AttemptResult],
        releases: list[tuple[int, int]],
        reports: dict[tuple[int, int], tuple[float, str | None]],
    ) -> Flushed:
        """Write each kind of row on its own, halving a refused batch until the rows at
        fault stand alone (a few statements for one bad row in thousands). A success that
        cannot be stored becomes a failed attempt, final (its handler has run: running it
        again could repeat its effects); a failure that cannot be stored is written again,
        final, with a note in place of what was refused; what even that cannot store is
        logged and left to its lease. If the connection goes meanwhile, what is not written
        yet goes back in the outbox."""
        apart = _Apart(db)
        try:
            written_ok, unstored_ok = await apart.write(
                lambda rows: success_statement(node, rows, holder=holder), ok
            )
            failures = bad + [_unstorable_success(s, why) for s, why in unstored_ok]
            failed_rows, unstored = await apart.write(
                lambda rows: failure_statement(node, rows, config, holder=holder), failures
            )
            noted = [_unstorable_failure(r, why) for r, why in unstored]
            noted_rows, still = await apart.write(
                lambda rows: failure_statement(node, rows, config, holder=holder), noted
            )
            _, bad_releases = await apart.write(
                lambda rows: release_statement(rows, holder), releases
            )
            _, bad_reports = await apart.write(
                lambda rows: progress_statement(dict(rows), holder), list(reports.items())
            )
        except DatabaseDown:
            # All of it goes back, written or not: fencing makes a second write of a stored
            # row a no-op (counted late), and a release or a progress report is idempotent.
            self._put_back(ok, bad, releases, reports)
            raise
        for what, rows in (
            ("outcome", [r for r, _ in still]),
            ("release", [r for r, _ in bad_releases]),
            ("progress report", [r for r, _ in bad_reports]),
        ):
            for row in rows:
                log.error(
                    f"a job's {what} could not be written even as a plain failure; "
                    "its lease will bring the job back",
                    extra={"node": node, "row": repr(row)[:200]},
                )
        recorded = len(written_ok) + len(failed_rows) + len(noted_rows)
        stored_failures = [r for r in failures if all(r is not u for u, _ in unstored)]
        return Flushed(
            late=len(ok) + len(bad) - recorded - len(still),
            requeued=bool(bad or releases),
            succeeded=len(ok) - len(unstored_ok),
            failures=tuple(stored_failures + noted),
            failed_rows=tuple(map(Failed._make, failed_rows + noted_rows)),
            statement_errors=apart.refusals,
            dropped=len(still) + len(bad_releases) + len(bad_reports),
        )


class _Apart:
    """Writes a list of rows with a statement built per sublist, halving refused sublists."""

    def __init__(self, db: ManagedConnection) -> None:
        self.db = db
        self.refusals = 0

    async def write(
        self, build: Callable[[list[Row]], Statement], rows: list[Row]
    ) -> tuple[list[Any], list[tuple[Row, str]]]:
        """(rows the statements returned, [(row, why) for each row refused on its own])."""
        returned: list[Any] = []
        refused: list[tuple[Row, str]] = []
        pending = [rows] if rows else []
        while pending:
            part = pending.pop()
            try:
                result = await self.db.run(_pipelined([build(part)]))
            except StatementError as exc:
                self.refusals += 1
                if len(part) == 1:
                    refused.append((part[0], clean_text(str(exc), 500)))
                else:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]  # the first half next
                continue
            returned += result[0]
        return returned, refused


def _count(formatted: Sequence[tuple[list[int], SuccessColumns]]) -> int:
    """How many successes the formatted batches hold."""
    return sum(len(ids) for ids, _ in formatted)


def _unstorable_success(success: Success, why: str) -> AttemptResult:
    return AttemptResult(
        success[0],
        success[1],
        "failed",
        error=f"the handler returned, but its result could not be stored: {why}",
        final=True,
        pid=success[3],
        started_at=_from_micros(success[SUCCESS_STARTED]),
        finished_at=_from_micros(success[SUCCESS_FINISHED]),
    )


def _unstorable_failure(result: AttemptResult, why: str) -> AttemptResult:
    kept = clean_text(result.error or "", UNSTORED_ERROR_KEPT_BYTES)
    return replace(
        result,
        outcome="failed" if result.outcome == "succeeded" else result.outcome,
        error=f"this attempt's outcome could not be stored ({why}); its error began:\n{kept}",
        final=True,
        backoff=None,
        backoff_seconds=None,
    )


def _from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, UTC)


def progress_statement(
    reports: dict[tuple[int, int], tuple[float, str | None]], holder: str | None = None
) -> Statement:
    return sql("save_progress"), {
        "holder": holder,
        "ids": [k[0] for k in reports],
        "attempts": [k[1] for k in reports],
        "fractions": [v[0] for v in reports.values()],
        "messages": [v[1] for v in reports.values()],
    }


def _pipelined(statements: list[Statement]) -> Callable[[Any], Awaitable[list[list[Any]]]]:
    async def work(conn: Any) -> list[list[Any]]:
        return await run_pipelined(conn, statements)

    return work
