"""The Python API beside enqueue: get, cancel, retry and wait, on the caller's connection
(`conn=`, used as is) or on one of their own; an asyncio connection is pointed at jobfleet.aio."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.types.string import TextLoader

import jobfleet
import jobfleet.aio
from jobfleet.jobs import AttemptResult
from jobfleet.supervisor.store import claim, record


def _run(conn: psycopg.Connection[Any], job_id: int, outcome: AttemptResult) -> None:
    [job] = claim(conn, holder="n/1", types=["echo"], queues=None, limit=1, lease_seconds=60)
    assert job.id == job_id
    record(conn, "n", [outcome])


def test_get_shows_the_job_with_its_attempts_on_any_connection(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    job_id = jobfleet.enqueue(conn, "echo", {"n": 1})
    _run(conn, job_id, AttemptResult(job_id, 1, "failed", error="boom"))
    shown = jobfleet.get(job_id)
    assert (shown["id"], shown["state"], shown["payload"]) == (job_id, "queued", {"n": 1})
    assert [(a["attempt"], a["outcome"]) for a in shown["attempts"]] == [(1, "failed")]
    assert jobfleet.get(job_id, conn=conn) == shown
    with pytest.raises(jobfleet.JobNotFound):
        jobfleet.get(10**9)


def test_conn_is_used_as_is_inside_the_callers_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as app:  # not autocommit: the app's own transaction
        job_id = jobfleet.enqueue(app, "echo")
        assert jobfleet.get(job_id, conn=app)["state"] == "queued"
        assert jobfleet.cancel(job_id, conn=app) == "cancelled"
        with pytest.raises(jobfleet.JobNotFound):
            jobfleet.get(job_id)  # another connection: nothing committed yet
        app.rollback()
        with pytest.raises(jobfleet.JobNotFound):
            jobfleet.get(job_id, conn=app)


def test_cancel_a_queued_job_flag_a_running_one_and_refuse_a_finished_one(
    conn: psycopg.Connection[Any],
) -> None:
    queued, running = jobfleet.enqueue(conn, "echo"), jobfleet.enqueue(conn, "echo")
    assert jobfleet.cancel(queued) == "cancelled"
    claim(conn, holder="n/1", types=["echo"], queues=None, limit=1, lease_seconds=60)
    assert jobfleet.cancel(running, conn=conn) == "running"
    with pytest.raises(jobfleet.JobfleetError, match="only queued or running jobs can be"):
        jobfleet.cancel(queued)


def test_retry_runs_a_dead_or_cancelled_job_again_with_a_fresh_budget(
    conn: psycopg.Connection[Any],
) -> None:
    dead = jobfleet.enqueue(conn, "echo", max_attempts=1)
    _run(conn, dead, AttemptResult(dead, 1, "failed", error="boom"))
    cancelled = jobfleet.enqueue(conn, "echo")
    jobfleet.cancel(cancelled)
    assert jobfleet.retry(dead) == "queued"
    assert jobfleet.retry(cancelled, conn=conn) == "queued"
    again = jobfleet.get(dead)
    assert (again["state"], again["attempt"], again["max_attempts"]) == ("queued", 1, 2)
    with pytest.raises(jobfleet.JobfleetError, match="only dead or cancelled"):
        jobfleet.retry(dead)
    with pytest.raises(jobfleet.JobNotFound):
        jobfleet.retry(10**9)


def test_wait_on_the_callers_connection(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo")
    _run(conn, job_id, AttemptResult(job_id, 1, "succeeded", result_json='{"ok": true}'))
    assert jobfleet.wait(job_id, timeout=5, conn=conn) == {"ok": True}
    assert jobfleet.wait(job_id, timeout=5) == {"ok": True}


def test_an_asyncio_connection_is_pointed_at_jobfleet_aio(db_url: str) -> None:
    async def calls() -> list[str]:
        messages = []
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            for call, run in (
                ("enqueue", lambda: jobfleet.enqueue(aconn, "echo")),  # type: ignore[arg-type]
                ("enqueue_many", lambda: jobfleet.enqueue_many(aconn, "echo", [1])),  # type: ignore[arg-type]
                ("get", lambda: jobfleet.get(1, conn=aconn)),  # type: ignore[arg-type]
                ("cancel", lambda: jobfleet.cancel(1, conn=aconn)),  # type: ignore[arg-type]
                ("retry", lambda: jobfleet.retry(1, conn=aconn)),  # type: ignore[arg-type]
                ("wait", lambda: jobfleet.wait(1, conn=aconn)),  # type: ignore[arg-type]
            ):
                with pytest.raises(TypeError) as raised:
                    run()
                assert f"jobfleet.aio.{call}(" in str(raised.value)
                messages.append(call)
        return messages

    assert len(asyncio.run(calls())) == 6


def test_a_frameworks_loaders_on_the_callers_connection_do_not_change_the_shapes(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """Django registers its own loaders on the connection it hands out (jsonb as text, for
    its JSONField): get and wait on it still return JSON as Python values, and the
    framework's connection keeps its loaders."""
    job_id = jobfleet.enqueue(conn, "echo", {"n": 1})
    _run(conn, job_id, AttemptResult(job_id, 1, "succeeded", result_json='{"ok": true}'))
    query = "SELECT payload FROM jobs WHERE id = %s"

    def as_text(app: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        for oid in ("json", "jsonb"):
            app.adapters.register_loader(oid, TextLoader)

    with psycopg.connect(db_url) as app:
        as_text(app)
        shown = jobfleet.get(job_id, conn=app)
        assert (shown["payload"], shown["result"]) == ({"n": 1}, {"ok": True})
        assert jobfleet.wait(job_id, timeout=5, conn=app) == {"ok": True}
        assert app.execute(query, (job_id,)).fetchone() == ('{"n": 1}',)

    async def from_asyncio() -> tuple[Any, Any, Any]:
        async with await psycopg.AsyncConnection.connect(db_url) as aapp:
            as_text(aapp)
            shown = await jobfleet.aio.get(job_id, conn=aapp)
            result = await jobfleet.aio.wait(job_id, timeout=5, conn=aapp)
            own = await (await aapp.execute(query, (job_id,))).fetchone()
            return shown["payload"], result, own

    assert asyncio.run(from_asyncio()) == ({"n": 1}, {"ok": True}, ('{"n": 1}',))
