"""Scenario `soak` (run only when named): a steady load for a long time, read once a minute.

`jobfleet bench --scenario soak --duration 20m` offers Sizes.soak_rate jobs/s (soak_load.MIX:
short jobs, with retries and failures mixed in) to one node with the default workers, from
this process in ticks of 0.1 s, one transaction a tick (`jobfleet.enqueue_many` per kind), and
every Sizes.soak_sample_seconds records: jobs finished per second, enqueue -> start p50 and
p99 (ten sampled no-op jobs a second), the sizes of jobs and job_attempt_log and their
indexes, their dead tuples and autovacuum runs, and the supervisor's and workers' resident
memory. Finished jobs are kept Sizes.soak_retention_seconds (JOBFLEET_RETENTION_SECONDS), so
the table reaches its steady size within the first minutes and must stay there: the pruner
deletes what autovacuum must then reclaim. Whether each measure stayed flat is
soak_load.growth: the last half's mean over the first half's.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

import jobfleet
from jobfleet.bench import scratch, soak_probe
from jobfleet.bench.context import Context
from jobfleet.bench.latency import percentiles
from jobfleet.bench.nodes import BenchError, BenchNode, started_nodes, wait_until
from jobfleet.bench.soak_load import MIX, due, growth

TICK = 0.1
# Measures whose flatness is the soak's verdict (soak_load.growth of each row's value).
FLAT = (
    "finished_jobs_per_s",
    "start_p99_ms",
    "jobs_total_mib",
    "jobs_dead_tuples",
    "log_dead_tuples",
    "supervisor_rss_mib",
    "worker_rss_mib",
)


class Loader:
    """Enqueues what is due each tick; keeps the id of each tick's first no-op to time."""

    def __init__(self, conn: psycopg.Connection[Any], rate: float) -> None:
        self.conn, self.rate = conn, rate
        self.offered = {kind.type: 0 for kind in MIX}
        self.pending: list[int] = []

    @property
    def total(self) -> int:
        return sum(self.offered.values())

    def tick(self, elapsed: float) -> None:
        with self.conn.transaction():
            for kind in MIX:
                count = due(self.rate, kind.share, elapsed, self.offered[kind.type])
                if count == 0:
                    continue
                ids = jobfleet.enqueue_many(
                    self.conn, kind.type, [kind.payload] * count, **dict(kind.options)
                )
                self.offered[kind.type] += count
                if kind.type == "noop":
                    self.pending.append(ids[0])


class Sampler:
    """One row per interval, from the probe connection and /proc."""

    def __init__(self, conn: psycopg.Connection[Any], node: BenchNode, loader: Loader) -> None:
        self.conn, self.node, self.loader = conn, node, loader
        self.started = self.last = time.perf_counter()
        self.last_offered = self.last_finished = 0

    def row(self) -> dict[str, Any]:
        now = time.perf_counter()
        seconds = now - self.last
        offered = self.loader.total
        finished = offered - soak_probe.unfinished(self.conn)
        started = soak_probe.started_ms(self.conn, self.loader.pending)
        self.loader.pending = [i for i in self.loader.pending if i not in started]
        latency = percentiles(list(started.values()))
        tables = soak_probe.tables(self.conn)
        jobs, log = tables.get("jobs", {}), tables.get("job_attempt_log", {})
        workers = [soak_probe.rss_mib(pid) for pid in self.node.children()]
        row = {
            "minute": (now - self.started) / 60,
            "offered_jobs_per_s": (offered - self.last_offered) / seconds,
            "finished_jobs_per_s": (finished - self.last_finished) / seconds,
            "unfinished": offered - finished,
            "start_samples": len(started),
            "start_p50_ms": latency.get("p50"),
            "start_p99_ms": latency.get("p99"),
            "jobs_table_mib": jobs.get("table_mib"),
            "jobs_index_mib": jobs.get("index_mib"),
            "jobs_total_mib": (jobs.get("table_mib") or 0) + (jobs.get("index_mib") or 0),
            "jobs_live_tuples": jobs.get("live_tuples"),
            "jobs_dead_tuples": jobs.get("dead_tuples"),
            "jobs_autovacuums": jobs.get("autovacuums"),
            "log_table_mib": log.get("table_mib"),
            "log_index_mib": log.get("index_mib"),
            "log_dead_tuples": log.get("dead_tuples"),
            "log_autovacuums": log.get("autovacuums"),
            "supervisor_rss_mib": soak_probe.rss_mib(self.node.pid),
            "worker_rss_mib": max(workers, default=0.0),
            # The machine's 1-minute load average: a shared machine's other work shows here.
            "load_average": os.getloadavg()[0],
        }
        self.last, self.last_offered, self.last_finished = now, offered, finished
        return row


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    seconds, rate, every = sizes.soak_seconds, sizes.soak_rate, sizes.soak_sample_seconds
    env = {"JOBFLEET_RETENTION_SECONDS": f"{sizes.soak_retention_seconds:g}"}
    with scratch.scratch_database(ctx.server, "soak") as url, started_nodes() as started:
        node = BenchNode(url, "bench-soak", workers=ctx.workers, env=env, log_dir=ctx.log_dir)
        started.append(node)
        wait_until(lambda: len(node.children()) >= ctx.workers, 60, "the soak node's workers")
        with psycopg.connect(url) as load, psycopg.connect(url, autocommit=True) as probe:
            loader = Loader(load, rate)
            sampler = Sampler(probe, node, loader)
            rows = soak(ctx, node, loader, sampler, seconds, every)
        node.stop(60)
    return {
        "duration_seconds": seconds,
        "offered_jobs_per_s": rate,
        "workers": ctx.workers,
        "retention_seconds": sizes.soak_retention_seconds,
        "sample_seconds": every,
        "mix": {kind.type: kind.share for kind in MIX},
        "offered": loader.total,
        "rows": rows,
        "growth": {name: growth([r[name] or 0.0 for r in rows]) for name in FLAT},
    }


def soak(
    ctx: Context, node: BenchNode, loader: Loader, sampler: Sampler, seconds: float, every: float
) -> list[dict[str, Any]]:
    """Offer the load until `seconds` have passed; a row every `every` seconds (the last at
    the end)."""
    rows: list[dict[str, Any]] = []
    samples = max(1, int(seconds // every))
    started = sampler.started
    while len(rows) < samples:
        now = time.perf_counter()
        loader.tick(now - started)
        if now >= started + every * (len(rows) + 1):
            rows.append(sampler.row())
            ctx.step(f"soak: {rows[-1]['minute']:.1f} min, {loader.total:,} jobs offered")
        if not node.running():
            raise BenchError(f"the soak node exited:\n{node.process.log_tail()}")
        time.sleep(max(0.0, TICK - (time.perf_counter() - now)))
    return rows
