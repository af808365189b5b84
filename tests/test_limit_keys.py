"""Limits per key and fair turns with real nodes (issue 19): `limit_key` makes max_running and
rate hold per value of a payload field across three nodes, while different keys run side by
side; a key's backlog does not hold back another key's first jobs; `types set --limit-key` is
obeyed at run time; a SIGKILLed node's per-key counters are right once the reaper has run."""

from __future__ import annotations

import signal
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin, polling
from tests.conftest import Cli, all_finished, scalar, wait_until
from tests.fleet_support import deepest_overlap, handler_module

HANDLERS = """
import time
from jobfleet.worker import handler

@handler("per_customer", max_running=1, limit_key="customer")
def per_customer(payload):
    time.sleep(payload["seconds"])

@handler("paced_customer", rate="5/s", limit_key="customer")
def paced_customer(payload):
    time.sleep(payload["seconds"])

@handler("turns", limit_key="customer")
def turns(payload):
    time.sleep(payload["seconds"])

@handler("capped", max_running=1)
def capped(payload):
    time.sleep(payload["seconds"])
"""


def start_nodes(
    fleet: Any, tmp_path: Any, count: int, workers: int, *, lease: float = 2.0
) -> list[Any]:
    """`lease`: the fleet's short lease is for the recovery test; the others count attempts,
    and a loaded machine's WAL flush stalled for 2 s expires every lease renewed meanwhile
    (each is counted from its statement, not its commit): seen once in a full run, every
    running job lost at once, one a key."""
    env = {
        **handler_module(tmp_path, "keyed_handlers", HANDLERS),
        "JOBFLEET_LEASE_SECONDS": str(lease),
    }
    return [
        fleet(f"n{i}", "--workers", str(workers), "--handlers", "keyed_handlers", env=env)
        for i in range(count)
    ]


def key_counters(conn: psycopg.Connection[Any], type: str) -> dict[str, int]:
    """Each key's own count of its running jobs (keys with rows)."""
    rows = conn.execute(
        "SELECT k.key, k.claimed - coalesce(f.finished, 0) FROM key_limits k"
        " LEFT JOIN key_finished f USING (type, key) WHERE k.type = %s",
        (type,),
    )
    return {str(key): int(n) for key, n in rows}


def running_by_key(conn: psycopg.Connection[Any], type: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT payload ->> 'customer', count(*) FROM jobs WHERE type = %s AND state = 'running'"
        " GROUP BY 1",
        (type,),
    )
    return {str(key): int(n) for key, n in rows}


def intervals_by_key(conn: psycopg.Connection[Any], type: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = defaultdict(list)
    for key, started, finished in conn.execute(
        "SELECT j.payload ->> 'customer', a.started_at, a.finished_at FROM job_attempts a"
        " JOIN jobs j ON j.id = a.job_id WHERE j.type = %s",
        (type,),
    ):
        found[key].append((started, finished))
    return found


def test_max_running_holds_per_key_across_three_nodes_while_keys_run_side_by_side(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # The nodes are up before the jobs come, as a fleet's are: one started well before the
    # others (a loaded machine) holds the first jobs of four keys in its two workers (two
    # each, prefetched) and leaves the other nodes nothing to show side by side.
    start_nodes(fleet, tmp_path, 3, 2, lease=10)
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM nodes") == 3, what="three nodes")
    for key in range(6):
        jobfleet.enqueue_many(conn, "per_customer", [{"customer": f"c{key}", "seconds": 0.15}] * 6)
    most = 0
    for _ in polling.paced(  # at every look until all ended, never two of one key running
        0.02,
        until=lambda: all_finished(conn),
        timeout=120,
        what=lambda: conn.execute("SELECT * FROM key_limits").fetchall(),
        error=AssertionError,
    ):
        now = running_by_key(conn, "per_customer")
        assert max(now.values(), default=0) <= 1, now
        most = max(most, sum(now.values()))
    per_key = intervals_by_key(conn, "per_customer")
    assert sorted(per_key) == [f"c{k}" for k in range(6)]
    outcomes = conn.execute(
        "SELECT j.payload ->> 'customer', a.outcome, a.node, a.error, a.started_at,"
        " a.finished_at FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE a.outcome <> 'succeeded' ORDER BY 1"
    ).fetchall()
    assert all(len(spans) == 6 for spans in per_key.values()), outcomes
    assert max(deepest_overlap(spans) for spans in per_key.values()) == 1
    # Different keys ran at once: across keys, more than one ran side by side.
    assert deepest_overlap([s for spans in per_key.values() for s in spans]) >= 3
    nodes = scalar(
        conn,
        "SELECT count(DISTINCT node) FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE j.type = 'per_customer'",
    )
    assert nodes >= 2
    assert set(key_counters(conn, "per_customer").values()) <= {0}


def test_rate_holds_per_key_in_every_window(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # Jobs of 0.4 s, seen running by a look every 0.1 s: started_at is then the claim's time.
    for key in ("a", "b"):
        jobfleet.enqueue_many(conn, "paced_customer", [{"customer": key, "seconds": 0.4}] * 40)
    start_nodes(fleet, tmp_path, 3, 4, lease=10)
    claims: dict[tuple[int, int], tuple[str, datetime]] = {}
    wait_until(lambda: running_by_key(conn, "paced_customer"), what="the first claim")
    for _ in polling.paced(0.1, seconds=3.5):
        for job, attempt, key, started in conn.execute(
            "SELECT id, attempt, payload ->> 'customer', started_at FROM jobs"
            " WHERE type = 'paced_customer' AND state = 'running'"
        ):
            claims.setdefault((job, attempt), (key, started))
    for key in ("a", "b"):
        times = sorted(t for k, t in claims.values() if k == key)
        worst = max(sum(1 for u in times if t <= u < t + timedelta(seconds=1)) for t in times)
        assert worst <= 5, (key, worst)
        # About 5 a second each, for both keys at once (the other key's starts do not count).
        start = min(t for _, t in claims.values())
        in_three = [t for t in times if t < start + timedelta(seconds=3)]
        assert 10 <= len(in_three) <= 15, (key, len(in_three))


def test_a_key_behind_a_big_backlog_gets_its_turns(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    """Customer A with 2,000 queued and B with 20 enqueued after: all of B's start before a
    tenth of A's have (in FIFO order none of B's would start before all of A's)."""
    # Jobs of 10 ms: a node claims ahead only what its children run in about 0.2 s (the
    # dispatcher's batch), and a key's turn comes within one such claim.
    jobfleet.enqueue_many(conn, "turns", [{"customer": "A", "seconds": 0.01}] * 2000)
    jobfleet.enqueue_many(conn, "turns", [{"customer": "B", "seconds": 0.01}] * 20)
    start_nodes(fleet, tmp_path, 2, 4, lease=10)
    wait_until(lambda: all_finished(conn), timeout=120, what="every job to end")
    last_b = scalar(
        conn,
        "SELECT max(started_at) FROM jobs WHERE type = 'turns' AND payload ->> 'customer' = 'B'",
    )
    a_before = scalar(
        conn,
        "SELECT count(*) FROM jobs WHERE type = 'turns' AND payload ->> 'customer' = 'A'"
        " AND started_at < %s",
        (last_b,),
    )
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'") == 0
    assert a_before < 200, a_before


def test_types_set_limit_key_is_obeyed_at_run_time(
    cli: Cli, conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    for key in ("x", "y", "z"):
        jobfleet.enqueue_many(conn, "capped", [{"customer": key, "seconds": 0.3}] * 40)
    start_nodes(fleet, tmp_path, 2, 4, lease=10)
    wait_until(lambda: running_by_key(conn, "capped"), what="the first claim")
    for _ in polling.paced(0.05, count=10):  # one for the whole type
        assert sum(running_by_key(conn, "capped").values()) <= 1
    cli.ok("types", "set", "capped", "--limit-key", "customer")
    wait_until(
        lambda: sorted(running_by_key(conn, "capped").values()) == [1, 1, 1],
        timeout=10,
        what="one per key",
    )
    for _ in polling.paced(0.05, count=20):  # and never more than one of a key
        assert max(running_by_key(conn, "capped").values(), default=0) <= 1
    (shown,) = [t for t in cli.json("types", "list", "--json") if t["type"] == "capped"]
    assert shown["limit_key"] == "customer" and shown["set_at_run_time"] == ["limit_key"]
    assert shown["declared"] == {"max_running": 1, "rate": None, "limit_key": None}
    cli.ok("types", "set", "capped", "--limit-key", "none")
    wait_until(
        lambda: sum(running_by_key(conn, "capped").values()) <= 1,
        timeout=10,
        what="one for the whole type again",
    )
    for _ in polling.paced(0.05, count=10):
        assert sum(running_by_key(conn, "capped").values()) <= 1


def test_per_key_counters_are_exact_after_a_node_is_killed(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    for key in ("p", "q"):
        jobfleet.enqueue(conn, "per_customer", {"customer": key, "seconds": 30}, priority=1)
        jobfleet.enqueue_many(conn, "per_customer", [{"customer": key, "seconds": 0.05}] * 3)
    (doomed,) = start_nodes(fleet, tmp_path, 1, 3)
    wait_until(
        lambda: running_by_key(conn, "per_customer") == {"p": 1, "q": 1}, what="both keys full"
    )
    assert key_counters(conn, "per_customer") == {"p": 1, "q": 1}
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()
    start_nodes(fleet, tmp_path, 1, 3)  # its reaper requeues the lost attempts
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM job_attempt_log WHERE outcome = 'lost'") == 2,
        what="the reaper",
    )
    counted = key_counters(conn, "per_customer")
    running = running_by_key(conn, "per_customer")
    assert all(counted.get(k, 0) == running.get(k, 0) <= 1 for k in ("p", "q")), (
        counted,
        running,
    )
    # The long ones run again once lost; cancel them: the counters follow every way out.
    for (job,) in conn.execute("SELECT id FROM jobs WHERE (payload ->> 'seconds')::float = 30"):
        admin.cancel(conn, job)
    wait_until(lambda: all_finished(conn), timeout=60, what="every job to end")
    assert set(key_counters(conn, "per_customer").values()) <= {0}
