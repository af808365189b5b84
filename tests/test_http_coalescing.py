"""POST /jobs under concurrency, end to end against `jobfleet api`: the jobs of concurrent
requests share transactions, every client gets its own job, and one job that cannot be
written fails its own request alone."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from jobfleet.batch_enqueue import enqueue_committed
from jobfleet.enqueue import one_job
from jobfleet.http.enqueue_routes import statement_error
from jobfleet.http.server import free_port
from tests.conftest import Cli, scalar, wait_until
from tests.test_http_fleet import answers, call, new_key


@contextmanager
def one_api_process(db_url: str, **settings: str) -> Iterator[str]:
    """`jobfleet api` (one process, so concurrent requests meet in one event loop) with these
    JOBFLEET_ settings; its base URL."""
    port = free_port()
    env = {**os.environ, "JOBFLEET_DATABASE_URL": db_url, **settings}
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "jobfleet"),
            "api",
            "--port",
            str(port),
            "--processes",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), 60, "the API to answer")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def api(db_url: str) -> Iterator[str]:
    """One API process with a statement timeout of 1 s."""
    with one_api_process(db_url, JOBFLEET_STATEMENT_TIMEOUT_SECONDS="1") as base:
        yield base


def post_all(base: str, key: str, bodies: list[Any]) -> list[tuple[int, Any]]:
    """Every body POSTed to /jobs at once, each from its own client."""
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        done = pool.map(lambda body: call("POST", f"{base}/jobs", key, body)[:2], bodies)
        return list(done)


def post_all_held(base: str, key: str, bodies: list[Any], db_url: str) -> list[tuple[int, Any]]:
    """Every body POSTed to /jobs at once, each from its own client, while the jobs table is
    held against inserts: the first transaction waits until every request is sent, so the
    rest arrive while it runs, however slowly the clients get going on a busy machine."""
    sent = threading.Semaphore(0)
    host, port = base.removeprefix("http://").split(":")

    def post(body: Any) -> tuple[int, Any]:
        client = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
            client.request("POST", "/jobs", json.dumps(body).encode(), headers)
            sent.release()
            response = client.getresponse()
            return response.status, json.loads(response.read())
        finally:
            client.close()

    with (
        psycopg.connect(db_url) as holder,
        psycopg.connect(db_url, autocommit=True) as watcher,
        ThreadPoolExecutor(max_workers=len(bodies)) as pool,
    ):
        holder.execute("LOCK TABLE jobs IN SHARE MODE")  # an INSERT waits for it
        answers = pool.map(post, bodies)
        for _ in bodies:
            assert sent.acquire(timeout=30), "a client could not send its request"
        wait_until(
            lambda: scalar(watcher, BLOCKED_INSERTS, (holder.info.backend_pid,)),
            what="the first transaction to wait on the table",
        )
        holder.commit()
        return list(answers)


BLOCKED_INSERTS = """
SELECT count(*) FROM pg_stat_activity
WHERE %s = ANY(pg_blocking_pids(pid)) AND query LIKE '%%jobfleet_enqueue_set%%'
"""


def test_concurrent_posts_each_get_their_own_job_in_shared_transactions(
    cli: Cli, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(cli, "burst", "enqueue,read")
    # Payloads go to the database as text in an array and are cast one by one: unicode,
    # escapes, large and fractional numbers read back exactly.
    odd = {"s": 'é ☃ \u2028 \\ " \\u0000', "f": 12.75, "e": 1.5e20, "big": 2**62, "neg": -0.25}
    bodies = [{"type": "echo", "payload": {"n": n, **odd}} for n in range(64)]
    with one_api_process(db_url) as base:
        answered = post_all_held(base, key, bodies, db_url)
    assert [status for status, _ in answered] == [201] * 64
    # Each answer is its own job, read back whole.
    assert sorted(job["payload"]["n"] for _, job in answered) == list(range(64))
    for _, job in answered:
        assert job["state"] == "queued" and job["type"] == "echo" and job["attempt"] == 0
    ids = {job["id"] for _, job in answered}
    assert len(ids) == 64
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE id = ANY(%s)", (list(ids),)) == 64
    stored = dict(conn.execute("SELECT id, payload FROM jobs").fetchall())
    for _, job in answered:
        assert stored[job["id"]] == job["payload"] == {"n": job["payload"]["n"], **odd}
    # Jobs committed together share their transaction id: far fewer transactions than jobs.
    transactions = scalar(conn, "SELECT count(DISTINCT xmin::text) FROM jobs")
    assert transactions < 64 / 2, transactions


def test_a_job_whose_write_fails_fails_its_own_request_alone(
    api: str, cli: Cli, db_url: str, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(cli, "burst", "enqueue")
    with psycopg.connect(db_url) as holder:
        # An open transaction holds the idempotency key: a job with it waits on that
        # transaction's row until the lock timeout (the statement timeout, 1 s) ends its
        # statement.
        holder.execute("INSERT INTO jobs (type, idempotency_key) VALUES ('echo', 'held')")
        bodies: list[Any] = [{"type": "echo", "payload": {"n": n}} for n in range(12)]
        bodies.insert(5, {"type": "echo", "idempotency_key": "held"})
        answered = post_all(api, key, bodies)
        holder.rollback()
    statuses = [status for status, _ in answered]
    assert statuses[5] == 503, answered[5]
    assert answered[5][1]["error"] == "database_unavailable"
    assert statuses[:5] + statuses[6:] == [201] * 12
    added = [job["payload"]["n"] for status, job in answered if status == 201]
    assert sorted(added) == list(range(12))
    assert scalar(conn, "SELECT count(*) FROM jobs") == 12
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE idempotency_key = 'held'") == 0


def test_a_repeated_idempotency_key_in_one_burst_makes_one_job(
    api: str, cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    key = new_key(cli, "burst", "enqueue")
    bodies = [{"type": "echo", "idempotency_key": "once", "payload": {"n": n}} for n in range(16)]
    answered = post_all(api, key, bodies)
    statuses = sorted(status for status, _ in answered)
    assert statuses == [200] * 15 + [201]
    assert len({job["id"] for _, job in answered}) == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def test_what_fails_a_whole_batch_and_what_only_its_statement() -> None:
    assert statement_error(psycopg.errors.QueryCanceled())
    assert statement_error(psycopg.errors.LockNotAvailable())
    assert statement_error(psycopg.errors.CheckViolation())
    assert statement_error(psycopg.errors.UniqueViolation())
    assert not statement_error(psycopg.errors.AdminShutdown())
    assert not statement_error(psycopg.OperationalError("connection lost"))
    assert not statement_error(psycopg.InterfaceError("connection closed"))


def test_the_set_statement_bounds_its_lock_waits_for_its_own_transaction_alone(
    db_url: str,
) -> None:
    """enqueue_committed is one statement in autocommit: its lock_timeout is set for that
    statement's transaction, and the session (a pooler's server connection) keeps its own."""

    async def run() -> tuple[str, str, int]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as c:
            before = await _lock_timeout(c)
            added = await enqueue_committed(c, [one_job("echo", None, {})], "1234")
            return before, await _lock_timeout(c), len(added)

    before, after, added = asyncio.run(run())
    assert added == 1
    assert after == before == "0"


async def _lock_timeout(conn: psycopg.AsyncConnection[Any]) -> str:
    cur = await conn.execute("SHOW lock_timeout")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])
