"""Cancel, the dead-letter queue, status, show and wait."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet import admin
from jobfleet.errors import JobfleetError, JobNotFound
from jobfleet.jobs import AttemptResult
from jobfleet.settings import load_settings
from jobfleet.supervisor.store import claim, record
from tests.conftest import scalar

CONFIG = load_settings()


def take(conn: psycopg.Connection[Any]) -> list[Any]:
    return claim(conn, holder="n1", types=["echo", "fail"], queues=None, limit=10, lease_seconds=30)


def test_cancel_queued_job(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo")
    assert admin.cancel(conn, job_id) == "cancelled"
    assert take(conn) == []
    with pytest.raises(JobfleetError, match="already cancelled"):
        admin.cancel(conn, job_id)
    with pytest.raises(JobNotFound):
        admin.cancel(conn, 999_999)


def test_cancel_running_job_flags_it_and_it_does_not_retry(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "fail")
    [job] = take(conn)
    assert admin.cancel(conn, job_id) == "running"
    record(conn, "n1", [AttemptResult(job.id, job.attempt, "failed", error="stopped")], CONFIG)
    assert scalar(conn, "SELECT state FROM jobs") == "cancelled"
    assert scalar(conn, "SELECT outcome FROM job_attempts") == "cancelled"


def make_dead(conn: psycopg.Connection[Any], n: int, type: str = "fail") -> list[int]:
    """`n` dead jobs of `type` (no other job of the type may be queued)."""
    ids = jobfleet.enqueue_many(conn, type, list(range(n)), max_attempts=1)
    jobs = claim(conn, holder="n1", types=[type], queues=None, limit=n, lease_seconds=30)
    record(
        conn,
        "n1",
        [AttemptResult(j.id, j.attempt, "failed", error=f"err {j.id}") for j in jobs],
        CONFIG,
    )
    return ids


def test_dlq_list_retry_purge(conn: psycopg.Connection[Any]) -> None:
    ids = make_dead(conn, 3)
    listed = admin.dlq_list(conn)
    assert sorted(j["id"] for j in listed) == ids
    assert {j["last_error"] for j in listed} == {f"err {i}" for i in ids}
    assert admin.dlq_retry(conn, ids[0]) == [ids[0]]
    row = conn.execute(
        "SELECT state, attempt, max_attempts FROM jobs WHERE id = %s", (ids[0],)
    ).fetchone()
    assert row == ("queued", 1, 2)
    with pytest.raises(JobfleetError, match="not dead"):
        admin.dlq_retry(conn, ids[0])
    assert admin.dlq_purge(conn, older_than_seconds=3600) == 0
    assert admin.dlq_purge(conn, older_than_seconds=None) == 2
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE job_id = ANY(%s)", (ids[1:],)) == 0
    assert admin.dlq_retry(conn, None) == []


def test_status_counts_and_unhandled_types(conn: psycopg.Connection[Any]) -> None:
    jobfleet.enqueue(conn, "echo")
    jobfleet.enqueue(conn, "mystery")
    conn.execute(
        "INSERT INTO nodes (name, hostname, pid, workers, types) VALUES ('a', 'h', 1, 2, %s)",
        (["echo"],),
    )
    conn.execute(
        "INSERT INTO nodes (name, hostname, pid, workers, types, last_heartbeat) "
        "VALUES ('gone', 'h', 2, 2, %s, now() - interval '1 hour')",
        (["mystery"],),
    )
    report = admin.status(conn)
    assert report["counts"] == {
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "cancelled": 0,
        "dead": 0,
    }
    assert [n["name"] for n in report["nodes"]] == ["a"]
    assert set(report["nodes"][0]) >= {"name", "pid", "workers", "busy", "last_heartbeat"}
    assert report["unhandled_types"] == ["mystery"]


def test_list_jobs_filters(conn: psycopg.Connection[Any]) -> None:
    a = jobfleet.enqueue(conn, "echo", queue="q1")
    b = jobfleet.enqueue(conn, "fail")
    assert [j["id"] for j in admin.list_jobs(conn)] == [b, a]
    assert [j["id"] for j in admin.list_jobs(conn, type="echo")] == [a]
    assert [j["id"] for j in admin.list_jobs(conn, queue="q1")] == [a]
    assert admin.list_jobs(conn, state="dead") == []
    assert [j["id"] for j in admin.list_jobs(conn, limit=1, before=b)] == [a]
    with pytest.raises(ValueError, match="state 'done' is not one of"):
        admin.list_jobs(conn, state="done")


def test_wait_returns_result_or_raises(conn: psycopg.Connection[Any], db_url: str) -> None:
    ok = jobfleet.enqueue(conn, "echo")
    bad = jobfleet.enqueue(conn, "fail", max_attempts=1)
    with pytest.raises(TimeoutError, match="still queued"):
        jobfleet.wait(ok, timeout=0.2)
    jobs = {j.id: j for j in take(conn)}

    def finish() -> None:
        with psycopg.connect(db_url, autocommit=True) as other:
            record(
                other,
                "n1",
                [
                    AttemptResult(ok, jobs[ok].attempt, "succeeded", result_json='{"r": 1}'),
                    AttemptResult(bad, jobs[bad].attempt, "failed", error="Trace\nValueError: x"),
                ],
                CONFIG,
            )

    worker = threading.Thread(target=finish)
    worker.start()
    assert jobfleet.wait(ok, timeout=30) == {"r": 1}
    worker.join()
    with pytest.raises(jobfleet.JobFailed, match="ended dead: ValueError: x") as info:
        jobfleet.wait(bad, timeout=30)
    assert info.value.state == "dead"
    with pytest.raises(JobNotFound):
        jobfleet.wait(123456, timeout=1)
