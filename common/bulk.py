"""Bulk maintenance by filter: cancel the queued jobs of a type or queue, queue the dead jobs
of a type again, in bounded batches (the CLI, the HTTP API and the console call these).

Each batch is its own short transaction: `pick_jobs` locks up to `Batches.size` matching jobs
from the state's partial index (SKIP LOCKED: a job a claim holds is passed over, never waited
for, so a million-job cancel neither waits on the hot path nor holds it up), then the one-job
statement runs over them (`cancel_job`, `requeue_jobs`), and the batch commits. The loop ends
with the first batch that changes nothing. A job that a claim takes while the cancel runs ends
running, not cancelled: a queued-jobs cancel never touches a running job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import pq

from jobfleet.admin import DLQ_STATES, requeue_params
from jobfleet.db import Connection, bounded_transaction
from jobfleet.log import get_logger
from jobfleet.options import OptionError, check_name
from jobfleet.queries import sql
from jobfleet.settings import Settings

# Why: 1,000 rows lock and write in a few milliseconds, so a batch never holds a row a claim
# wants for long, and a commit per 1,000 keeps WAL and lock memory small.
BATCH_SIZE = 1000
BATCH_SIZE_MAX = 10_000

# Called after each batch with the jobs changed so far (the CLI prints it on stderr).
Progress = Callable[[int], None]

log = get_logger(__name__)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a bulk change takes: of a type, in a queue, or both; at least one, so that a
    change of every job is never one keystroke away: `every` says so in so many words (as
    `dlq retry --all` does). Checked as every name is (OptionError naming `type` or `queue`)."""

    type: str | None = None
    queue: str | None = None
    every: bool = False

    def __post_init__(self) -> None:
        if self.every and (self.type is not None or self.queue is not None):
            raise OptionError("type", "every job, or those of a type or a queue: not both")
        if self.type is None and self.queue is None and not self.every:
            raise OptionError("type", "give a type, a queue or both to say which jobs to change")
        for option in ("type", "queue"):
            if getattr(self, option) is not None:
                check_name(option, getattr(self, option))


@dataclass(frozen=True)
class Batches:
    """How a bulk change runs: `size` jobs per batch (1 to BATCH_SIZE_MAX), each batch a
    transaction with `config`'s timeouts, `progress` told after each."""

    size: int = BATCH_SIZE
    config: Settings | None = None
    progress: Progress | None = None

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int):
            raise OptionError("batch_size", f"batch_size {size!r} must be an integer")
        if not 1 <= size <= BATCH_SIZE_MAX:
            raise OptionError(
                "batch_size", f"batch_size {size} is out of range: use 1 to {BATCH_SIZE_MAX}"
            )


def cancel_queued(conn: Connection, where: JobFilter, batches: Batches = Batches()) -> int:
    """Cancel every queued job (scheduled for later ones too) `where` matches; return how many
    were cancelled. Running jobs are left alone.

    `conn`: an autocommit connection outside a transaction; each batch commits on it."""
    return _in_batches(conn, "queued", where, _cancel, batches)


def retry_dead(conn: Connection, where: JobFilter, batches: Batches = Batches()) -> int:
    """Queue every dead job `where` matches again with a fresh budget of attempts (as
    `dlq retry ID` does one); return how many. `conn` as for cancel_queued."""
    return _in_batches(conn, "dead", where, _requeue, batches)


def _cancel(ids: list[int]) -> tuple[str, dict[str, Any]]:
    return sql("cancel_job"), {"ids": ids}


def _requeue(ids: list[int]) -> tuple[str, dict[str, Any]]:
    return sql("requeue_jobs"), {**requeue_params(None, DLQ_STATES), "all": False, "ids": ids}


def _in_batches(
    conn: Connection,
    state: str,
    where: JobFilter,
    change: Callable[[list[int]], tuple[str, dict[str, Any]]],
    batches: Batches,
) -> int:
    if not conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError(
            "bulk changes commit batch by batch: pass an autocommit connection that is not "
            "inside a transaction"
        )
    matching = {"type": where.type, "queue": where.queue}
    total = done = 0
    while True:
        with bounded_transaction(conn, batches.config):
            conn.execute(sql("index_plans"), prepare=False)
            picked = conn.execute(
                sql("pick_jobs"), {"state": state, **matching, "limit": batches.size}, prepare=False
            )
            ids = [row[0] for row in picked.fetchall()]
            changed = 0
            if ids:
                statement, params = change(ids)
                changed = len(conn.execute(statement, params, prepare=False).fetchall())
        if changed == 0:
            break
        total += changed
        done += 1
        if batches.progress is not None:
            batches.progress(total)
    log.info(
        "bulk change done",
        extra={"from_state": state, **matching, "changed": total, "batches": done},
    )
    return total
