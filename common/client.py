"""The application's calls beside enqueue: look at a job, cancel it, run it again, wait for
it. Each takes `conn=`, a psycopg connection used as is (in its current transaction: nothing
here commits or rolls back), and otherwise opens a connection of its own for the call: one
that works through a transaction-mode pooler (jobfleet.db connection_options(pooler_safe=True)),
the call in one transaction that begins with jobfleet's timeouts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from jobfleet import admin
from jobfleet.db import bounded_transaction, connect, require_sync
from jobfleet.queries import sql
from jobfleet.tolerant import OwnLoaders

T = TypeVar("T")


@contextmanager
def _connection(conn: psycopg.Connection[Any] | None, call: str) -> Iterator[Any]:
    if conn is not None:
        require_sync(conn, call)
        yield OwnLoaders(conn)  # its transaction, jobfleet's loaders (jobfleet.tolerant)
        return
    with connect(autocommit=True, pooler_safe=True) as own, bounded_transaction(own):
        yield own


def _on(conn: psycopg.Connection[Any] | None, call: str, work: Callable[[Any], T]) -> T:
    with _connection(conn, call) as c:
        return work(c)


def get(job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> dict[str, Any]:
    """The job with every attempt, in the `jobfleet jobs show --json` shape; JobNotFound for
    an id that does not exist."""
    return _on(conn, "get", lambda c: admin.show_job(c, job_id))


def cancel(job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
    """Cancel the job: "cancelled" for a queued one (at once), "running" for one whose node
    was asked to stop it (it ends cancelled). A finished job is a JobfleetError saying how."""
    return _on(conn, "cancel", lambda c: admin.cancel(c, job_id))


def retry(job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
    """A dead or cancelled job back to the queue with a fresh budget of attempts; returns
    "queued". Any other state is a JobfleetError saying which."""

    def work(c: Any) -> str:
        if (
            c.execute(
                sql("requeue_jobs"), admin.requeue_params(job_id, admin.RETRYABLE_STATES)
            ).fetchone()
            is not None
        ):
            return "queued"
        raise admin.retry_refused(job_id, c.execute(sql("job_state"), {"id": job_id}).fetchone())

    return _on(conn, "retry", work)
