"""Idempotency keys: a repeated key returns the first job's id and writes nothing."""

from __future__ import annotations

import multiprocessing
from typing import Any

import psycopg

import jobfleet
from tests.conftest import scalar


def test_same_key_returns_the_first_id(conn: psycopg.Connection[Any]) -> None:
    first = jobfleet.enqueue(conn, "echo", {"a": 1}, idempotency_key="order-42")
    again = jobfleet.enqueue(conn, "echo", {"a": 2}, idempotency_key="order-42")
    other = jobfleet.enqueue(conn, "echo", {"a": 3}, idempotency_key="order-43")
    assert again == first != other
    assert scalar(conn, "SELECT count(*) FROM jobs") == 2
    assert scalar(conn, "SELECT payload FROM jobs WHERE id = %s", (first,)) == {"a": 1}


def test_key_inside_an_open_transaction_waits_for_the_holder(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as a:
        first = jobfleet.enqueue(a, "echo", idempotency_key="k")
        a.rollback()  # the first holder vanishes: the key is free again
    second = jobfleet.enqueue(conn, "echo", idempotency_key="k")
    assert second != first
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def _enqueue_with_key(url: str, key: str, barrier: Any, out: Any) -> None:
    with psycopg.connect(url) as c:
        barrier.wait()
        ids = [jobfleet.enqueue(c, "echo", {"from": "proc"}, idempotency_key=key)]
        c.commit()
        out.put(ids[0])


def test_concurrent_enqueue_from_eight_processes_makes_one_job(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_with_key, args=(db_url, "same", barrier, out)) for _ in range(8)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = {out.get(timeout=5) for _ in procs}
    assert len(ids) == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1
