"""Waiting for a job to finish, from any process (its own connection)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import psycopg

from jobfleet.db import bounded_transaction, connect, require_sync
from jobfleet.errors import JobFailed, JobNotFound
from jobfleet.jobs import TERMINAL_STATES
from jobfleet.queries import sql
from jobfleet.tolerant import OwnLoaders

# Start by checking often (short jobs finish in milliseconds), back off to spare the database.
FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.5


def wait_for_terminal(
    job_id: int,
    timeout: float | None = None,
    url: str | None = None,
    *,
    conn: psycopg.Connection[Any] | None = None,
) -> tuple[str, Any, str | None]:
    """Block until the job is succeeded, cancelled or dead; return (state, result, error).
    Polls on `conn` if given (as is: it should not hold a snapshot, such as an open REPEATABLE
    READ transaction), else on a connection of its own."""
    if conn is not None:
        return _poll(OwnLoaders(conn), job_id, timeout)  # jobfleet's loaders (jobfleet.tolerant)
    with connect(url, autocommit=True, pooler_safe=True) as own:
        return _poll(own, job_id, timeout, own=True)


def _poll(
    conn: Any, job_id: int, timeout: float | None, *, own: bool = False
) -> tuple[str, Any, str | None]:
    """`own`: our connection, which may sit behind a transaction-mode pooler: each look is a
    transaction of its own that begins with the timeouts (one held across the sleeps would pin
    a server connection for the whole wait)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_POLL_SECONDS
    while True:
        with bounded_transaction(conn) if own else nullcontext():
            row = conn.execute(sql("job_wait_state"), {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        state, result, error = row
        if state in TERMINAL_STATES:
            return state, result, error
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {state} after {timeout:g} s")
            pause = min(pause, left)
        time.sleep(pause)
        pause = min(pause * 2, MAX_POLL_SECONDS)


def wait(
    job_id: int, timeout: float | None = None, *, conn: psycopg.Connection[Any] | None = None
) -> Any:
    """The result of the job once it succeeded (polling on `conn` if given, else on a
    connection of its own).

    Raises JobFailed (with the state and last error) for a dead or cancelled job, TimeoutError
    when `timeout` seconds pass first, JobNotFound for an id that does not exist.
    """
    if conn is not None:
        require_sync(conn, "wait")
    state, result, error = wait_for_terminal(job_id, timeout, conn=conn)
    if state != "succeeded":
        raise JobFailed(job_id, state, error)
    return result
