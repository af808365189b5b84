"""Periodic jobs with real nodes: one job per tick for the whole cluster, through a leader's
death, and `jobfleet cron list`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from tests.conftest import Cli, scalar, wait_until
from tests.fleet_support import handler_module

HANDLERS = """
from jobfleet.worker import handler

@handler("tick", every=1, cron_payload={"source": "schedule"})
def tick(payload):
    return payload

@handler("nightly", cron="0 3 * * *")
def nightly(payload):
    return None
"""


def tick_of(key: str) -> datetime:
    return datetime.fromisoformat(key.removeprefix("jobfleet:tick:tick:"))


def enqueued_ticks(conn: psycopg.Connection[Any]) -> list[datetime]:
    rows = conn.execute("SELECT idempotency_key FROM jobs WHERE type = 'tick' ORDER BY id")
    return [tick_of(key) for (key,) in rows]


def test_three_nodes_enqueue_one_job_a_tick_through_the_leaders_death(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "periodic_handlers", HANDLERS)
    nodes = [
        fleet(name, "--workers", "1", "--handlers", "periodic_handlers", env=env)
        for name in ("a", "b", "c")
    ]
    first = wait_until(lambda: enqueued_ticks(conn)[:1], what="a first tick")[0]
    wait_until(lambda: len(enqueued_ticks(conn)) >= 4, what="a few ticks")
    (leader,) = [node for node in nodes if "leading maintenance" in node.log()]
    leader.kill()
    end = first + timedelta(seconds=10)
    wait_until(lambda: enqueued_ticks(conn)[-1] >= end, timeout=60, what="ten seconds of ticks")

    seen = enqueued_ticks(conn)
    assert len(seen) == len(set(seen))  # never two jobs for one tick
    in_window = [t for t in seen if first <= t < end]
    assert 9 <= len(in_window) <= 11, in_window
    # Each ran, with the schedule's payload.
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE type = 'tick' AND state <> "
                       "'succeeded'") == 0, what="the ticks to run",
    )  # fmt: skip
    assert scalar(conn, "SELECT DISTINCT result->>'source' FROM jobs WHERE type = 'tick'") == (
        "schedule"
    )


def test_cron_list_shows_each_schedule_with_its_runs(
    conn: psycopg.Connection[Any], cli: Cli, fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "periodic_handlers", HANDLERS)
    fleet("a", "--workers", "1", "--handlers", "periodic_handlers", env=env)
    wait_until(lambda: len(enqueued_ticks(conn)) >= 2, what="two ticks")
    listed = {row["type"]: row for row in cli.json("cron", "list", "--json")}
    assert listed["nightly"]["schedule"] == "cron 0 3 * * *"
    assert listed["nightly"]["last_run"] is None and listed["nightly"]["active"] is True
    assert listed["nightly"]["next_run"].endswith("03:00:00+00:00")
    assert listed["tick"]["schedule"] == "every 1" and listed["tick"]["last_run"] is not None
    assert listed["tick"]["last_job"] in {
        row[0] for row in conn.execute("SELECT id FROM jobs WHERE type = 'tick'")
    }
    assert "every 1" in cli.ok("cron", "list")
