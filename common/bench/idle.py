"""Scenario 9, idle cost: what a node with nothing to do costs its host and the database, and
what a fleet of idle nodes (Sizes.idle_nodes, 50) costs the database in all.

CPU: user + system time of the supervisor and its workers (/proc/<pid>/stat) over the window.
Queries: committed transactions in the node's database (pg_stat_database.xact_commit), less
the probe's own (pg_stat_statements would count statements, but it needs
shared_preload_libraries, which the embedded cluster leaves empty; a node's idle work is one
statement a transaction). PostgreSQL publishes an idle session's counts up to 10 s late, and
the node's idle backoff takes a few seconds to reach its ceiling, so the window opens only
after the settle time (Sizes.idle_settle_seconds): start-up's statements are then counted
before it, and the ones published late at each end of the window balance out.

The fleet's nodes have one worker each (workers cost the database nothing: only the
supervisor connects) and hold three connections each; the embedded cluster allows 500
(scaling.check_room fails first, naming max_connections, when the server has too few free).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from jobfleet.bench import scaling, scratch
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchNode, started_nodes, wait_until

COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
# The probe reads the counter twice; the first read's own commit lands inside the window.
PROBE_COMMITS = 1


def run(ctx: Context) -> dict[str, Any]:
    window = ctx.sizes.idle_seconds
    with scratch.scratch_database(ctx.server, "idle") as url, started_nodes() as started:
        node = BenchNode(url, "bench-idle", workers=ctx.workers, log_dir=ctx.log_dir)
        started.append(node)
        ctx.step(f"idle: a node with {ctx.workers} workers, {window:g} s")
        wait_until(lambda: len(node.children()) >= ctx.workers, 60, "the node's workers")
        time.sleep(ctx.sizes.idle_settle_seconds)
        measured = measure(url, started, window)
        node.stop()
    return {"workers": ctx.workers, **measured, "fleet": fleet(ctx)}


def fleet(ctx: Context) -> dict[str, Any]:
    """Sizes.idle_nodes idle nodes on one database: queries/s in all and each one's share."""
    count, window = ctx.sizes.idle_nodes, ctx.sizes.idle_seconds
    with scratch.scratch_database(ctx.server, "idlefleet") as url, started_nodes() as started:
        scaling.check_room(url, count)
        ctx.step(f"idle: starting {count} idle nodes x 1 worker")
        for i in range(count):
            started.append(BenchNode(url, f"bench-idle-{i + 1}", workers=1, log_dir=ctx.log_dir))
        scaling.wait_for_nodes(url, started, 1)
        ctx.step(f"idle: {count} idle nodes, {window:g} s")
        time.sleep(ctx.sizes.idle_settle_seconds)
        connections = scaling.count(url, scaling.CONNECTIONS)
        measured = measure(url, started, window)
        for node in started:
            node.signal_stop()
        for node in started:
            node.wait(60)
    return {
        "nodes": count,
        **measured,
        "queries_per_s_per_node": measured["queries_per_s"] / count,
        "connections": connections,
        "connections_per_node": connections / count,
    }


def measure(url: str, nodes: list[BenchNode], window: float) -> dict[str, Any]:
    """CPU of `nodes` and committed transactions in the database over `window` seconds."""
    with psycopg.connect(url, autocommit=True) as conn:
        cpu0 = sum(n.cpu_seconds() for n in nodes)
        commits0, t0 = _commits(conn), time.perf_counter()
        time.sleep(window)
        cpu1 = sum(n.cpu_seconds() for n in nodes)
        commits1, t1 = _commits(conn), time.perf_counter()
    elapsed = t1 - t0
    return {
        "seconds_measured": elapsed,
        "cpu_seconds": cpu1 - cpu0,
        "cpu_percent": (cpu1 - cpu0) / elapsed * 100,
        "queries_per_s": max(0, commits1 - commits0 - PROBE_COMMITS) / elapsed,
    }


def _commits(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(COMMITS).fetchone()
    return int(row[0]) if row else 0
