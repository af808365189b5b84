"""Scenario 7, many nodes: the same no-op fill drained by 1, 2, 4 and 8 supervisors on one
database, and by one node with 1, 2 and 4 workers; each beside the raw ceiling of the same run,
in Sizes.rounds rounds (the median reported).

The nodes start first and wait, idle, until every one is registered with its workers up; then
the fill (one COPY, whose statement's NOTIFY wakes them all at once) and the drain. So the
steady rate (the first job's start to the last one's end, the workers' clocks) is the rate of
all of them claiming from the same rows at once: SKIP LOCKED contention, if it bit, shows
there. The worker total stays near the cores (`workers // nodes` per node, at least 1): more
worker processes than cores would measure the scheduler, not the claim. Connections are
sampled from pg_stat_activity (application_name `jobfleet`, the scratch database's) while the
nodes drain; a node holds the same few whatever its workers.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from jobfleet.bench import ceiling, scratch
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError, BenchNode, started_nodes, wait_until
from jobfleet.bench.throughput import DRAIN_TIMEOUT, LAST_DONE, span, wait_for_top

START_TIMEOUT = 180.0  # eight Python processes starting on two loaded cores
CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = 'jobfleet'"
)
REGISTERED = "SELECT count(*) FROM nodes"
FREE_CONNECTIONS = (
    "SELECT current_setting('max_connections')::int"
    " - current_setting('superuser_reserved_connections')::int"
    " - (SELECT count(*) FROM pg_stat_activity)"
)
# What a node keeps open (claims, records, control), with room for its HTTP-less extras.
CONNECTIONS_PER_NODE = 4


def workers_per_node(total: int, nodes: int) -> int:
    return max(1, total // nodes)


def run(ctx: Context) -> dict[str, Any]:
    """Sizes.rounds rounds, each a ceiling and every node and worker count in turn (so a load
    that comes and goes on a shared machine falls on all of them); per count, the median."""
    jobs = ctx.sizes.scale_jobs
    ceilings: list[dict[str, Any]] = []
    nodes: dict[int, list[dict[str, Any]]] = {count: [] for count in ctx.sizes.nodes}
    workers: dict[int, list[dict[str, Any]]] = {w: [] for w in ctx.sizes.worker_counts}
    for n in range(1, ctx.sizes.rounds + 1):
        ceilings.append(ceiling.one_round(ctx, jobs, n, analyse=False))
        for count in nodes:
            per_node = workers_per_node(ctx.workers, count)
            nodes[count].append(drain(ctx, jobs, nodes=count, workers=per_node))
        for w in workers:
            workers[w].append(drain(ctx, jobs, nodes=1, workers=w))
    ceiling_rate = median_round(ceilings, "jobs_per_s")["jobs_per_s"]
    by_nodes = [{"nodes": c, **_median(rounds)} for c, rounds in nodes.items()]
    by_workers = [{"workers": w, **_median(rounds)} for w, rounds in workers.items()]
    one = by_nodes[0]["jobs_per_s"] if by_nodes else 0.0
    for run_ in by_nodes + by_workers:
        run_["vs_ceiling"] = run_["jobs_per_s"] / ceiling_rate if ceiling_rate else None
    for run_ in by_nodes:
        run_["vs_one_node"] = run_["jobs_per_s"] / one if one else None
    return {
        "jobs": jobs,
        "workers": ctx.workers,
        "ceiling_jobs_per_s": ceiling_rate,
        "ceiling_rounds": [r["jobs_per_s"] for r in ceilings],
        "by_nodes": by_nodes,
        "by_workers": by_workers,
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median round by steady rate, with every round's rate and the most connections."""
    middle = median_round(rounds, "jobs_per_s")
    return {
        **middle,
        "rounds": [r["jobs_per_s"] for r in rounds],
        "connections_per_node": max(r["connections_per_node"] for r in rounds),
    }


def drain(ctx: Context, jobs: int, *, nodes: int, workers: int) -> dict[str, Any]:
    """`nodes` supervisors of `workers` each, started and idle, then a fill of `jobs` drained."""
    with scratch.scratch_database(ctx.server, "nodes") as url, started_nodes() as started:
        check_room(url, nodes)
        ctx.step(f"nodes: starting {nodes} node(s) x {workers} workers")
        for i in range(nodes):
            node = BenchNode(url, f"bench-{i + 1}", workers=workers, log_dir=ctx.log_dir)
            started.append(node)
        wait_for_nodes(url, started, workers)
        idle_connections = count(url, CONNECTIONS)
        ctx.step(f"nodes: {jobs:,} jobs on {nodes} node(s) x {workers} workers")
        filled = time.perf_counter()
        scratch.fill(url, jobs)
        busiest = watch(url, jobs, started)
        wall = time.perf_counter() - filled
        for node in started:
            node.signal_stop()
        for node in started:
            node.wait(60)
        succeeded, seconds = span(url, jobs)
    return {
        "workers_per_node": workers,
        "jobs": jobs,
        "succeeded": succeeded,
        "span_seconds": seconds,
        "jobs_per_s": succeeded / seconds if seconds > 0 else 0.0,
        "wall_seconds": wall,
        "wall_jobs_per_s": jobs / wall,
        "connections_idle": idle_connections,
        "connections_busy": busiest,
        "connections_per_node": busiest / nodes,
    }


def check_room(url: str, nodes: int) -> None:
    """The server must take every node's connections: fail first, saying so, not mid-run."""
    free = count(url, FREE_CONNECTIONS)
    if free < nodes * CONNECTIONS_PER_NODE:
        raise BenchError(
            f"{nodes} nodes need about {nodes * CONNECTIONS_PER_NODE} connections and the "
            f"server has {free} free: raise max_connections or run fewer nodes"
        )


def wait_for_nodes(url: str, nodes: list[BenchNode], workers: int) -> None:
    def ready() -> bool:
        for node in nodes:
            if not node.running():
                raise BenchError(f"node {node.name} exited at start:\n{node.process.log_tail()}")
        up = all(len(node.children()) >= workers for node in nodes)
        return up and count(url, REGISTERED) == len(nodes)

    wait_until(ready, START_TIMEOUT, f"{len(nodes)} node(s) registered", pause=0.1)


def watch(url: str, jobs: int, nodes: list[BenchNode]) -> int:
    """Wait for every job to succeed (watching the last one's row, which costs the database
    nearly nothing, then the rest once); the most connections the nodes held meanwhile."""
    busiest = 0
    with psycopg.connect(url, autocommit=True) as conn:

        def last_done() -> bool:
            nonlocal busiest
            busiest = max(busiest, _one(conn, CONNECTIONS))
            if any(not node.running() for node in nodes):
                raise BenchError("a node exited during the drain")
            row = conn.execute(LAST_DONE, {"last": jobs}).fetchone()
            return bool(row and row[0])

        wait_until(last_done, DRAIN_TIMEOUT, f"{jobs:,} jobs drained", pause=0.05)
    wait_for_top(url, jobs, f"{jobs:,} jobs drained")
    return busiest


def count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return _one(conn, query)


def _one(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0
