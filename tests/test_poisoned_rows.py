"""Rows an operator changed by hand (or that hold the largest numbers a column takes) do not
stop the statements that serve every other job: claims, outcome writes, the lease reaper and
the dead-letter retry go on."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin
from jobfleet.jobs import AttemptResult
from jobfleet.supervisor.maintenance.lease_reaper import LeaseReaper
from jobfleet.supervisor.store import claim, record

INT_MAX = 2**31 - 1


def _claim(conn: psycopg.Connection[Any], limit: int = 10) -> list[Any]:
    return claim(conn, holder="n/1", types=["echo"], queues=None, limit=limit, lease_seconds=60)


def test_an_attempt_recorded_before_is_overwritten_not_a_failed_batch(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    reaped, failed = jobfleet.enqueue(conn, "echo"), jobfleet.enqueue(conn, "echo")
    _claim(conn)
    # As if each job's attempt had been set back by hand after its first attempt was logged.
    for job_id in (reaped, failed):
        conn.execute(
            "INSERT INTO job_attempt_log (job_id, attempt, outcome, error) "
            "VALUES (%s, 1, 'failed', 'an older run')",
            (job_id,),
        )
    written = record(conn, "n", [AttemptResult(failed, 1, "failed", error="the newer run")])
    assert written.written == 1
    conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 minute'")

    async def reap() -> Any:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            return await LeaseReaper(node="other", holder="other/1").run_once(aconn)

    assert [r.id for r in asyncio.run(reap())] == [reaped]
    log = dict(conn.execute("SELECT job_id, error FROM job_attempt_log ORDER BY job_id"))
    assert log[failed] == "the newer run"
    assert log[reaped].startswith("lease expired")


def test_a_job_at_the_largest_attempt_number_does_not_stop_claims(
    conn: psycopg.Connection[Any],
) -> None:
    stuck, fine = jobfleet.enqueue(conn, "echo"), jobfleet.enqueue(conn, "echo")
    conn.execute(
        "UPDATE jobs SET attempt = %s, max_attempts = %s WHERE id = %s", (INT_MAX, INT_MAX, stuck)
    )
    claimed = {job.id: job.attempt for job in _claim(conn)}
    assert claimed == {stuck: INT_MAX, fine: 1}


def test_the_dead_letter_retry_of_the_largest_budget_works(
    conn: psycopg.Connection[Any],
) -> None:
    job = jobfleet.enqueue(conn, "echo")
    conn.execute(
        "UPDATE jobs SET state = 'dead', attempt = 3, max_attempts = %s WHERE id = %s",
        (INT_MAX, job),
    )
    assert admin.dlq_retry(conn, job_id=job) == [job]
    row = conn.execute("SELECT state, max_attempts FROM jobs WHERE id = %s", (job,)).fetchone()
    assert row == ("queued", INT_MAX)
