"""Limits per key in the database, without nodes (issue 19): every way into the queue keys a job
the same way, a payload without a usable key shares one bucket and never fails, long values
stay small, `types set --limit-key` keys the queue again, and the recount corrects a key's
counter and clears the rows of keys that are idle."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import jobfleet
import jobfleet.aio
from jobfleet import type_limits
from jobfleet.supervisor.store import claim_limited_statements, run_pipelined_blocking
from tests.conftest import scalar

PAYLOADS = [
    {"customer": "acme"},
    {"customer": 42},
    {"customer": "42"},
    {"customer": True},
    {"customer": None},
    {"customer": {"id": 1}},
    {"customer": [1]},
    {"other": 1},
    [1, 2],
    "text",
    None,
    {"customer": "tab\there\\back\nline"},
    {"customer": 1.5},
    {"customer": 1e20},
    {"customer": "é" * 200},
]
KEYS = ["acme", "42", "42", "true", "", "", "", "", "", "", ""]
KEYS += ["tab\there\\back\nline", "1.5", "100000000000000000000", None]


def keys_of(conn: psycopg.Connection[Any], ids: list[int]) -> list[str | None]:
    rows = dict(conn.execute("SELECT id, limit_key FROM jobs WHERE id = ANY(%s)", (ids,)))
    return [rows[i] for i in ids]


def test_every_way_into_the_queue_keys_a_job_alike(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    type_limits.set_limits(conn, "charge", limit_key="customer")
    one = [jobfleet.enqueue(conn, "charge", p) for p in PAYLOADS]
    many = jobfleet.enqueue_many(conn, "charge", PAYLOADS)

    async def through_aio() -> list[int]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            return await jobfleet.aio.enqueue_many(aconn, "charge", PAYLOADS)

    for ids in (one, many, asyncio.run(through_aio())):
        keys = keys_of(conn, ids)
        assert keys[:-1] == KEYS[:-1]
        digest = keys[-1]  # 200 characters: a digest of 71, the same for the same value
        assert digest is not None and digest.startswith("sha256:") and len(digest) == 71
    assert len({k[-1] for k in (keys_of(conn, one), keys_of(conn, many))}) == 1
    # A type without a limit key: no key, nothing to index.
    assert keys_of(conn, [jobfleet.enqueue(conn, "plain", {"customer": "acme"})]) == [None]


def test_a_changed_limit_key_keys_the_queue_again(conn: psycopg.Connection[Any]) -> None:
    ids = jobfleet.enqueue_many(conn, "charge", [{"customer": "a", "region": "eu"}] * 3)
    assert keys_of(conn, ids) == [None] * 3
    shown = type_limits.set_limits(conn, "charge", max_running="2", limit_key="customer")
    assert shown["limit_key"] == "customer" and shown["set_at_run_time"] == [
        "max_running",
        "limit_key",
    ]
    assert keys_of(conn, ids) == ["a"] * 3
    type_limits.set_limits(conn, "charge", limit_key="region")
    assert keys_of(conn, ids) == ["eu"] * 3
    type_limits.set_limits(conn, "charge", limit_key="none")
    assert keys_of(conn, ids) == [None] * 3


def claim_keyed(conn: psycopg.Connection[Any], limit: int) -> list[Any]:
    statements = claim_limited_statements(
        holder="n/1", type="charge", queues=None, limit=limit, lease_seconds=30, keyed=True
    )
    return run_pipelined_blocking(conn, statements)[1]


def test_the_recount_corrects_a_keys_counter_and_clears_idle_keys(
    conn: psycopg.Connection[Any],
) -> None:
    type_limits.set_limits(conn, "charge", max_running="2", limit_key="customer")
    for key in ("a", "b", "c"):
        jobfleet.enqueue_many(conn, "charge", [{"customer": key}] * 3)
    claimed = claim_keyed(conn, 9)
    assert len(claimed) == 6  # two a key: max_running per key
    assert scalar(conn, "SELECT count(*) FROM key_limits") == 3
    # Jobs of c end by hand (no outcome writer counts them); a's counter is pushed off.
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', lease_expires_at = NULL"
        " WHERE state = 'running' AND limit_key = 'c'"
    )
    conn.execute("UPDATE key_limits SET claimed = claimed + 5 WHERE key = 'a'")
    fixed = type_limits.recount(conn, ["charge"])
    assert fixed == [("charge", 7, 2, 0, "a"), ("charge", 2, 0, 0, "c")]
    # c runs nothing and has no rate window: its rows are gone; a and b keep theirs.
    keys = conn.execute("SELECT key, claimed FROM key_limits ORDER BY key").fetchall()
    assert keys == [("a", 2), ("b", 2)]
    assert scalar(conn, "SELECT count(*) FROM key_finished") == 2
    # The next claim of c makes them again, and a and b stay full.
    again = claim_keyed(conn, 9)
    assert {row[6]["customer"] for row in again} == {"c"} and len(again) == 1
