"""Scenario 9, idle cost: what a node with nothing to do costs its host and the database.

CPU: user + system time of the supervisor and its workers (/proc/<pid>/stat) over the window.
Queries: committed transactions in the node's database (pg_stat_database.xact_commit), less
the probe's own. PostgreSQL publishes an idle session's counts up to 10 s late, and the node's
idle backoff takes a few seconds to reach its ceiling, so the window opens only after the
settle time (Sizes.idle_settle_seconds): start-up's statements are then counted before it, and
the ones published late at each end of the window balance out.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from jobfleet.bench import scratch
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
        with psycopg.connect(url, autocommit=True) as conn:
            cpu0, commits0, t0 = node.cpu_seconds(), _commits(conn), time.perf_counter()
            time.sleep(window)
            cpu1, commits1, t1 = node.cpu_seconds(), _commits(conn), time.perf_counter()
        node.stop()
    elapsed = t1 - t0
    return {
        "seconds_measured": elapsed,
        "workers": ctx.workers,
        "cpu_seconds": cpu1 - cpu0,
        "cpu_percent": (cpu1 - cpu0) / elapsed * 100,
        "queries_per_s": max(0, commits1 - commits0 - PROBE_COMMITS) / elapsed,
    }


def _commits(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(COMMITS).fetchone()
    return int(row[0]) if row else 0
