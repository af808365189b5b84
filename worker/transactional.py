"""Transactional handlers (`@handler(..., transactional=True)`): the handler writes through
`ctx.tx`, and the worker completes the job in that same transaction, fenced as the supervisor
does (the same `complete_batch` statement), then commits. So the handler's writes happen
exactly once or not at all:

- the handler raises, or its result cannot be stored: rolled back; the failure is recorded by
  the supervisor as any other;
- the attempt no longer holds its job (its lease lapsed and the job was requeued): the fence
  matches nothing, the writes are rolled back, and the attempt stays recorded `lost`;
- the worker is killed before its commit: PostgreSQL rolls the transaction back;
- the worker is killed after its commit, before the supervisor hears: the job is `succeeded`
  already, and the supervisor's record of a crash is fenced off by that same state.

A worker opens its connections on first use, one per thread that runs such jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from jobfleet.completion import success_statement
from jobfleet.jobs import AttemptResult, Success
from jobfleet.queries import sql
from jobfleet.text import clean_text

Execute = Callable[..., Success | AttemptResult]

LOST = (
    "the job's lease was lost before its writes could commit (another attempt holds it now): "
    "its writes were rolled back"
)


class _RolledBack(Exception):
    def __init__(self, outcome: AttemptResult) -> None:
        self.outcome = outcome


class Transactions:
    def __init__(self, url: str, node: str, holder: str | None) -> None:
        self.url = url
        self.node = node
        self.holder = holder  # the supervisor run's lease holder: part of the fence
        self._local = threading.local()

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            from jobfleet.db import connect

            conn = connect(self.url)
            self._local.conn = conn
        return conn

    def run(
        self, execute: Execute, job_id: int, attempt: int, **kwargs: Any
    ) -> tuple[Success | AttemptResult, bool]:
        """Run the job's handler in a transaction and complete it there; return its outcome
        and whether it is committed (True: the supervisor must not write it again)."""
        try:
            conn = self._connection()
            with conn.transaction():
                outcome = execute(job_id, attempt, tx=conn, **kwargs)
                if isinstance(outcome, AttemptResult):
                    raise _RolledBack(outcome)
                conn.execute(sql("index_plans"), prepare=False)
                query, params = success_statement(self.node, [outcome], holder=self.holder)
                if conn.execute(query, params, prepare=False).fetchone() is None:
                    lost = AttemptResult(job_id, attempt, "lost", error=LOST, pid=outcome[3])
                    raise _RolledBack(lost)
            return outcome, True
        except _RolledBack as rolled_back:
            return rolled_back.outcome, False
        except psycopg.Error as exc:
            # The transaction is gone (the commit may or may not have happened: the fence
            # decides, since the supervisor records this attempt failed only if it is still
            # running). A connection in a bad state is not reused.
            held = getattr(self._local, "conn", None)
            if held is not None and held.broken:
                self._local.conn = None
            reason = f"the job's transaction failed: {type(exc).__name__}: {exc}"
            return AttemptResult(job_id, attempt, "failed", error=clean_text(reason, 4096)), False
