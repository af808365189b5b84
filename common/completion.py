"""The fenced completion of successful attempts, as one statement: the supervisor writes its
children's successes in batches with it, and a transactional handler's worker writes its own
in the handler's transaction (worker/transactional.py). Only the attempt that still holds its
job (same attempt, still running, held by `holder`: the claim's locked_by) can complete it;
a NULL holder leaves the holder unchecked (tests and tools that claim by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

from jobfleet.jobs import Success
from jobfleet.queries import sql

Statement = tuple[str, dict[str, Any]]


class SuccessColumns(NamedTuple):
    """Successes as complete_batch reads them: each number column comma-separated, and each
    job's result as JSON text. A worker formats its own batch's (worker/loop.py) and the
    supervisor only joins batches: formatting is per job, and on the supervisor it took 0.5 us
    a job of the one core its hot path runs on (issue 17)."""

    ids: str
    attempts: str
    results: list[str]
    pids: str  # an empty field: no pid
    started: str  # microseconds since the epoch
    finished: str


def success_columns(successes: Sequence[Success]) -> SuccessColumns:
    ids, attempts, results, pids, started, finished = zip(*successes, strict=True)
    return SuccessColumns(
        ",".join(map(str, ids)),
        ",".join(map(str, attempts)),
        list(results),
        ",".join(map(str, pids)).replace("None", ""),
        ",".join(map(str, started)),
        ",".join(map(str, finished)),
    )


def success_rows(columns: SuccessColumns) -> list[Success]:
    """The successes back from their columns (to write them apart, or one by one)."""
    numbers = partial(map, int)
    return list(
        zip(
            numbers(columns.ids.split(",")),
            numbers(columns.attempts.split(",")),
            columns.results,
            [int(pid) if pid else None for pid in columns.pids.split(",")],
            numbers(columns.started.split(",")),
            numbers(columns.finished.split(",")),
            strict=True,
        )
    )


def success_statement(
    node: str,
    successes: Sequence[Success] = (),
    *,
    holder: str | None = None,
    formatted: Sequence[SuccessColumns] = (),
) -> Statement:
    """One statement for `successes` and the batches already `formatted` (not empty)."""
    parts = [*formatted, success_columns(successes)] if successes else list(formatted)
    return sql("complete_batch"), {
        "node": node,
        "holder": holder,
        "ids": ",".join([p.ids for p in parts]),
        "attempts": ",".join([p.attempts for p in parts]),
        "results": "[" + ",".join([",".join(p.results) for p in parts]) + "]",
        "pids": ",".join([p.pids for p in parts]),
        "started": ",".join([p.started for p in parts]),
        "finished": ",".join([p.finished for p in parts]),
    }
