"""Scenario 5, latency: enqueue -> start and enqueue -> finished, from the database's clock
(`created_at`) to the worker's (`started_at`, `finished_at`; the same host's clock).

Idle: one job at a time on a node with nothing else to do, a pause between jobs so the node
goes back to waiting: the NOTIFY path. Under load: jobs offered at a steady rate in small
batches while the node keeps up with them.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import psycopg

import jobfleet
from jobfleet.bench import scratch
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchNode, started_nodes, wait_until

WAIT_SECONDS = 60.0
LOAD_TICK = 0.01  # the loader enqueues one batch this often

LATENCIES = """
SELECT extract(epoch FROM started_at - created_at) * 1000,
       extract(epoch FROM finished_at - created_at) * 1000
FROM jobs WHERE id = ANY(%(ids)s) AND state = 'succeeded'
"""


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max by nearest rank (no interpolation between samples)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1]}


def latencies(url: str, ids: list[int]) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(LATENCIES, {"ids": ids}).fetchall()
    start = [float(r[0]) for r in rows]
    finish = [float(r[1]) for r in rows]
    return {
        "jobs": len(ids),
        "succeeded": len(rows),
        "start_ms": percentiles(start),
        "finish_ms": percentiles(finish),
        "start_cdf_ms": sorted(start),
        "finish_cdf_ms": sorted(finish),
    }


def run(ctx: Context) -> dict[str, Any]:
    with scratch.scratch_database(ctx.server, "latency") as url:
        with started_nodes() as started:
            started.append(BenchNode(url, "bench-1", workers=ctx.workers, log_dir=ctx.log_dir))
            with psycopg.connect(url, autocommit=True) as conn:
                ctx.step("latency: warming up")
                one_by_one(conn, 3, gap=0.0)
                ctx.step(f"latency: {ctx.sizes.latency_idle_samples} jobs one at a time, idle")
                idle_ids = one_by_one(
                    conn, ctx.sizes.latency_idle_samples, gap=ctx.sizes.latency_idle_gap
                )
            rate, seconds = ctx.sizes.latency_load_rate, ctx.sizes.latency_load_seconds
            ctx.step(f"latency: {rate:,} jobs/s offered for {seconds:g} s")
            load_ids, offered = under_load(url, rate, seconds)
            started[0].stop()
        idle = latencies(url, idle_ids)
        load = latencies(url, load_ids)
    load["offered_jobs_per_s"] = offered
    return {"idle": idle, "load": load, "workers": ctx.workers}


def one_by_one(conn: psycopg.Connection[Any], count: int, *, gap: float) -> list[int]:
    """Enqueue a job, wait until it succeeded, pause `gap`; `count` times."""
    ids = []
    for _ in range(count):
        time.sleep(gap)
        job = jobfleet.enqueue(conn, "noop", None)
        ids.append(job)
        wait_until(partial(all_succeeded, conn, job, job), WAIT_SECONDS, f"job {job}", pause=0.001)
    return ids


def all_succeeded(conn: psycopg.Connection[Any], first: int, last: int) -> bool:
    row = conn.execute(
        "SELECT count(*) = 0 FROM jobs WHERE id BETWEEN %s AND %s AND state <> 'succeeded'",
        (first, last),
    ).fetchone()
    return bool(row and row[0])


def under_load(url: str, rate: int, seconds: float) -> tuple[list[int], float]:
    """Offer `rate` jobs/s for `seconds` in a batch per tick; wait until all succeeded.
    Returns their ids and the rate actually offered."""
    per_tick = max(1, round(rate * LOAD_TICK))
    ids: list[int] = []
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        tick = 0
        while (now := time.perf_counter()) - started < seconds:
            due = started + tick * LOAD_TICK
            if now < due:
                time.sleep(due - now)
            ids += jobfleet.enqueue_many(conn, "noop", [None] * per_tick)
            conn.commit()
            tick += 1
        offered = len(ids) / (time.perf_counter() - started)
        wait_until(
            lambda: all_succeeded(conn, min(ids), max(ids)),
            WAIT_SECONDS,
            "the jobs offered under load to succeed",
            pause=0.05,
        )
        conn.commit()
    return ids, offered
