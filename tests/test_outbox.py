"""The outbox against a real PostgreSQL: a batch the database refuses on its data is written
apart, its bad rows recorded as failed attempts saying what could not be stored, the rest as
they were, and the node's connection stays usable."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

import jobfleet
from jobfleet.completion import success_columns
from jobfleet.jobs import AttemptResult, Success
from jobfleet.settings import load_settings
from jobfleet.supervisor.database import ManagedConnection
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.store import claim

NODE = "t"


def _claim_all(conn: psycopg.Connection[Any], n: int) -> list[tuple[int, int]]:
    ids = jobfleet.enqueue_many(conn, "echo", list(range(n)), max_attempts=3)
    jobs = claim(conn, holder=f"{NODE}/1", types=["echo"], queues=None, limit=n, lease_seconds=60)
    assert sorted(j.id for j in jobs) == ids
    return [(j.id, j.attempt) for j in sorted(jobs)]


def _success(job: tuple[int, int], body: str) -> Success:
    now = time.time_ns() // 1000
    return (job[0], job[1], body, 4242, now - 1000, now)


def _flush(outbox: Outbox, url: str) -> Any:
    async def go() -> Any:
        db = ManagedConnection("lane-test", url, load_settings(), raw_json=True)
        try:
            flushed = await outbox.flush(db, NODE, load_settings(), holder=f"{NODE}/1")
            # The same connection still works after the refusals.
            again = await db.run(lambda c: c.execute("SELECT 1"))
            assert await again.fetchone() == (1,)
            return flushed
        finally:
            await db.close()

    return asyncio.run(go())


def _states(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, str | None]]:
    rows = conn.execute("SELECT id, state, error FROM jobs ORDER BY id").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_refused_row_in_a_batch_of_successes_is_recorded_apart(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobs = _claim_all(conn, 200)
    poisoned = jobs[137]
    outbox = Outbox()
    # Bodies bypass the child's checks here: one is JSON PostgreSQL refuses (a lone surrogate
    # escape), one cannot even be encoded for the wire.
    outbox.add_successes(
        [
            _success(job, '"\\udcff"' if job == poisoned else "7" if job != jobs[3] else '"\udcff"')
            for job in jobs
        ]
    )
    flushed = _flush(outbox, db_url)
    assert flushed.succeeded == 198 and flushed.late == 0 and flushed.dropped == 0
    assert flushed.statement_errors > 0
    assert not outbox  # nothing waits: all of it was written
    states = _states(conn)
    bad = {poisoned[0], jobs[3][0]}
    assert {i for i, (s, _) in states.items() if s == "succeeded"} == {j[0] for j in jobs} - bad
    for job_id in bad:
        state, error = states[job_id]
        assert state == "dead"  # final: the handler ran, it must not run again
        assert error.startswith("the handler returned, but its result could not be stored")
    logged = conn.execute(
        "SELECT outcome, node, pid FROM job_attempts WHERE job_id = %s", (poisoned[0],)
    ).fetchall()
    assert logged == [("failed", NODE, 4242)]


def test_a_refused_row_in_batches_a_child_formatted_is_recorded_apart(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobs = _claim_all(conn, 200)
    poisoned = jobs[137]
    rows = [_success(job, '"\\udcff"' if job == poisoned else "7") for job in jobs]
    outbox = Outbox()
    # As the children send them (protocol.done), with a loose row between (a job run beside).
    outbox.add_formatted([r[0] for r in rows[:100]], success_columns(rows[:100]))
    outbox.add_success(rows[100])
    outbox.add_formatted([r[0] for r in rows[101:]], success_columns(rows[101:]))
    assert outbox.waiting == 200
    flushed = _flush(outbox, db_url)
    assert flushed.succeeded == 199 and flushed.late == 0 and flushed.dropped == 0
    assert flushed.statement_errors > 0 and not outbox
    states = _states(conn)
    assert {i for i, (s, _) in states.items() if s == "succeeded"} == {j[0] for j in jobs} - {
        poisoned[0]
    }
    state, error = states[poisoned[0]]
    assert state == "dead"
    assert error.startswith("the handler returned, but its result could not be stored")
    times = conn.execute(
        "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND attempt_pid = 4242"
        " AND finished_at - started_at = interval '1 ms'"
    ).fetchone()
    assert times == (199,)


def test_a_failure_that_cannot_be_stored_is_recorded_with_a_note(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    fine, poisoned = _claim_all(conn, 2)
    outbox = Outbox()
    # Straight into the list, past add_result's cleaning: the last line of defence.
    outbox.results += [
        AttemptResult(fine[0], fine[1], "failed", error="RuntimeError: retry me"),
        AttemptResult(poisoned[0], poisoned[1], "failed", error="Traceback\nbad\x00byte"),
    ]
    outbox.add_releases([])
    flushed = _flush(outbox, db_url)
    assert flushed.late == 0 and flushed.dropped == 0 and len(flushed.failures) == 2
    states = _states(conn)
    assert states[fine[0]] == ("queued", "RuntimeError: retry me")
    state, error = states[poisoned[0]]
    assert state == "dead"
    assert error.startswith("this attempt's outcome could not be stored (")
    assert error.endswith("its error began:\nTraceback\nbad\ufffdbyte")
    assert sorted(r.state for r in flushed.failed_rows) == ["dead", "queued"]
