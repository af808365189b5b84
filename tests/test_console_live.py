"""The console's live feed: one poller per process serves every open console, so the
database sees one read per tick whatever the number of open streams; each stream gets the
jobs its page watches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

import jobfleet
from jobfleet.http.console.live import LiveFeed

SNAPSHOTS = 5
TICK = 0.1


def counting_feed(db_url: str) -> tuple[LiveFeed, dict[str, int]]:
    """A feed on the test database that counts the transactions it opens."""
    opened = {"transactions": 0}

    @contextmanager
    def connect() -> Iterator[Any]:
        opened["transactions"] += 1
        with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
            yield conn

    return LiveFeed(connect, tick=TICK), opened


async def watch_streams(feed: LiveFeed, watched: list[int]) -> list[list[dict[str, Any]]]:
    """One stream per id, each until it has SNAPSHOTS snapshots; what each got."""

    async def one(job_id: int) -> list[dict[str, Any]]:
        stream = feed.stream([job_id], lifetime=60)
        got: list[dict[str, Any]] = []
        try:
            while len(got) < SNAPSHOTS:
                event = await stream.__anext__()
                if event.startswith("event: snapshot"):
                    got.append(json.loads(event.split("data: ", 1)[1]))
        finally:
            await stream.aclose()
        return got

    return list(await asyncio.gather(*(one(i) for i in watched)))


def test_many_open_consoles_cost_the_database_what_one_does(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    ids = jobfleet.enqueue_many(conn, "echo", [{"n": n} for n in range(60)])
    one_feed, one = counting_feed(db_url)
    asyncio.run(watch_streams(one_feed, ids[:1]))
    many_feed, many = counting_feed(db_url)
    got = asyncio.run(watch_streams(many_feed, ids[:40]))

    # A tick is one transaction for all streams, plus the counts at their own pace (at most
    # once every 2 s): 40 streams open about as many as one, not 40 times as many.
    assert one["transactions"] <= SNAPSHOTS + 3, one
    assert many["transactions"] <= SNAPSHOTS + 4, many
    assert many_feed.open_streams == 0
    for job_id, snapshots in zip(ids[:40], got, strict=True):
        last = snapshots[-1]
        assert job_id in {j["id"] for j in last["jobs"]}  # its watched job, though not recent
        assert last["counts"]["queued"] == 60
        assert len(last["jobs"]) <= 21  # the 20 newest and its own: not every page's jobs
