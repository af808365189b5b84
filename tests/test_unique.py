"""Unique jobs (`unique_for`): one job per type and payload within the window, whatever its
state, atomic under concurrent enqueues and blocking nothing else."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

import jobfleet
import jobfleet.aio
from jobfleet.options import OptionError
from tests.conftest import Cli, scalar, wait_until


def test_a_same_job_within_the_window_is_the_first_one(conn: psycopg.Connection[Any]) -> None:
    first = jobfleet.enqueue(conn, "echo", {"a": 1, "b": [1, 2]}, unique_for=600)
    # The same payload written another way (key order, spacing) is the same payload.
    assert jobfleet.enqueue(conn, "echo", {"b": [1, 2], "a": 1}, unique_for=600) == first
    assert jobfleet.enqueue(conn, "echo", {"a": 2, "b": [1, 2]}, unique_for=600) != first
    assert jobfleet.enqueue(conn, "noop", {"a": 1, "b": [1, 2]}, unique_for=600) != first
    # Whatever its state: finished, it still holds its place.
    conn.execute("UPDATE jobs SET state = 'succeeded' WHERE id = %s", (first,))
    assert jobfleet.enqueue(conn, "echo", {"a": 1, "b": [1, 2]}, unique_for=600) == first
    # Without unique_for, a job is a job.
    assert jobfleet.enqueue(conn, "echo", {"a": 1, "b": [1, 2]}) != first
    assert scalar(conn, "SELECT count(*) FROM jobs") == 4


def test_after_the_window_a_same_job_is_a_new_one(conn: psycopg.Connection[Any]) -> None:
    first = jobfleet.enqueue(conn, "echo", {"n": 1}, unique_for=0.3)
    wait_until(
        lambda: scalar(conn, "SELECT bool_and(expires_at <= now()) FROM unique_jobs"),
        what="the window to pass",
    )
    second = jobfleet.enqueue(conn, "echo", {"n": 1}, unique_for=0.3)
    assert second != first
    assert scalar(conn, "SELECT job_id FROM unique_jobs") == second


def test_a_rolled_back_enqueue_holds_no_place(conn: psycopg.Connection[Any], db_url: str) -> None:
    with psycopg.connect(db_url) as other:
        jobfleet.enqueue(other, "echo", {"n": 1}, unique_for=600)
        other.rollback()
    job = jobfleet.enqueue(conn, "echo", {"n": 1}, unique_for=600)
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1
    assert scalar(conn, "SELECT job_id FROM unique_jobs") == job


def test_eight_enqueuers_at_once_make_one_job(conn: psycopg.Connection[Any], db_url: str) -> None:
    start = threading.Barrier(8)
    ids: list[int] = []

    def enqueuer() -> None:
        with psycopg.connect(db_url) as mine:
            start.wait()
            ids.append(jobfleet.enqueue(mine, "echo", {"order": 42}, unique_for=600))
            mine.commit()

    threads = [threading.Thread(target=enqueuer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def test_an_enqueue_waiting_on_a_key_blocks_no_other_job(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url) as other:
        jobfleet.enqueue(holder, "echo", {"order": 1}, unique_for=600)  # not committed yet
        # Were it waiting on the holder, this would fail after 2 s instead of passing at once.
        other.execute("SET lock_timeout = '2s'")
        jobfleet.enqueue(other, "echo", {"order": 2}, unique_for=600, queue="other")
        jobfleet.enqueue(other, "noop", {"order": 1}, unique_for=600)
        jobfleet.enqueue(other, "echo", {"order": 1})
        other.commit()
        holder.commit()
    assert scalar(conn, "SELECT count(*) FROM jobs") == 4


def test_the_other_ways_in_take_unique_for(
    conn: psycopg.Connection[Any], db_url: str, cli: Cli, client: TestClient, key: dict[str, str]
) -> None:
    by_cli = int(cli.ok("enqueue", "echo", "--payload", '{"x": 1}', "--unique-for", "60"))
    assert int(cli.ok("enqueue", "echo", "--payload", '{"x": 1}', "--unique-for", "60")) == by_cli

    created = client.post("/jobs", json={"type": "echo", "payload": {"x": 2}, "unique_for": 60},
                          headers=key)  # fmt: skip
    again = client.post("/jobs", json={"type": "echo", "payload": {"x": 2}, "unique_for": 60},
                        headers=key)  # fmt: skip
    assert (created.status_code, again.status_code) == (201, 200)
    assert created.json()["id"] == again.json()["id"]
    bad = client.post("/jobs", json={"type": "echo", "unique_for": -1}, headers=key)
    assert bad.status_code == 422 and bad.json()["field"] == "body.unique_for"

    async def twice() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            one = await jobfleet.aio.enqueue(aconn, "echo", {"x": 3}, unique_for=60)
            two = await jobfleet.aio.enqueue(aconn, "echo", {"x": 3}, unique_for=60)
            return one, two

    one, two = asyncio.run(twice())
    assert one == two
    assert scalar(conn, "SELECT count(*) FROM jobs") == 3


def test_unique_for_is_refused_where_it_cannot_hold(
    conn: psycopg.Connection[Any], cli: Cli
) -> None:
    with pytest.raises(OptionError) as refused:
        jobfleet.enqueue_many(conn, "echo", [1, 2], unique_for=60)
    assert refused.value.option == "unique_for"
    with pytest.raises(OptionError) as bad:
        jobfleet.enqueue(conn, "echo", unique_for=float("nan"))
    assert bad.value.option == "unique_for"
    done = cli("enqueue", "echo", "--from-jsonl", "-", "--unique-for", "5", input="1\n")
    assert done.returncode == 2 and "--unique-for cannot be used with --from-jsonl" in done.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0
