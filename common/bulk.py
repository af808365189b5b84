"""Bulk maintenance by filter: cancel the queued jobs of a type or queue, queue the dead jobs
of a type again, in bounded batches (the CLI, the HTTP API and the console call these).

Each batch is its own short transaction: `pick_jobs` locks up to `batch_size` matching jobs
from the state's partial index (SKIP LOCKED: a job a claim holds is passed over, never waited
for, so a million-job cancel neither waits on the hot path nor holds it up), then the one-job
statement runs over them (`cancel_job`, `requeue_jobs`), and the batch commits. The loop ends
with the first batch that changes nothing. A job that a claim takes while the cancel runs ends
running, not cancelled: a queued-jobs cancel never touches a running job.
"""

from __future__ import annotations

from collections.abc import Callable
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


def cancel_queued(
    conn: Connection,
    *,
    type: str | None = None,
    queue: str | None = None,
    batch_size: int = BATCH_SIZE,
    config: Settings | None = None,
    progress: Progress | None = None,
) -> int:
    """Cancel every queued job (scheduled for later ones too) of `type` and/or `queue`;
    return how many were cancelled. Running jobs are left alone.

    `conn`: an autocommit connection outside a transaction; each batch commits on it."""
    return _in_batches(
        conn,
        "queued",
        _filter(type, queue),
        _cancel,
        batch_size=batch_size,
        config=config,
        progress=progress,
    )


def retry_dead(
    conn: Connection,
    *,
    type: str | None = None,
    queue: str | None = None,
    batch_size: int = BATCH_SIZE,
    config: Settings | None = None,
    progress: Progress | None = None,
) -> int:
    """Queue every dead job of `type` and/or `queue` again with a fresh budget of attempts
    (as `dlq retry ID` does one); return how many. `conn` as for cancel_queued."""
    return _in_batches(
        conn,
        "dead",
        _filter(type, queue),
        _requeue,
        batch_size=batch_size,
        config=config,
        progress=progress,
    )


def _cancel(ids: list[int]) -> tuple[str, dict[str, Any]]:
    return sql("cancel_job"), {"ids": ids}


def _requeue(ids: list[int]) -> tuple[str, dict[str, Any]]:
    return sql("requeue_jobs"), {**requeue_params(None, DLQ_STATES), "all": False, "ids": ids}


def _filter(type: str | None, queue: str | None) -> dict[str, str | None]:
    """The checked filter; at least one of type and queue (a bulk change of every job is
    never one keystroke away)."""
    if type is None and queue is None:
        raise OptionError("type", "give a type, a queue or both to say which jobs to change")
    return {
        "type": None if type is None else check_name("type", type),
        "queue": None if queue is None else check_name("queue", queue),
    }


def _in_batches(
    conn: Connection,
    state: str,
    where: dict[str, str | None],
    change: Callable[[list[int]], tuple[str, dict[str, Any]]],
    *,
    batch_size: int,
    config: Settings | None,
    progress: Progress | None,
) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise OptionError("batch_size", f"batch_size {batch_size!r} must be an integer")
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise OptionError(
            "batch_size", f"batch_size {batch_size} is out of range: use 1 to {BATCH_SIZE_MAX}"
        )
    if not conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError(
            "bulk changes commit batch by batch: pass an autocommit connection that is not "
            "inside a transaction"
        )
    total = batches = 0
    while True:
        with bounded_transaction(conn, config):
            conn.execute(sql("index_plans"), prepare=False)
            picked = conn.execute(
                sql("pick_jobs"), {"state": state, **where, "limit": batch_size}, prepare=False
            )
            ids = [row[0] for row in picked.fetchall()]
            changed = 0
            if ids:
                statement, params = change(ids)
                changed = len(conn.execute(statement, params, prepare=False).fetchall())
        if changed == 0:
            break
        total += changed
        batches += 1
        if progress is not None:
            progress(total)
    log.info(
        "bulk change done",
        extra={"from_state": state, **where, "changed": total, "batches": batches},
    )
    return total
