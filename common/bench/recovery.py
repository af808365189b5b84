"""Scenario 8, recovery: from kill -9 to the killed job running again.

A child: its supervisor reaps it, records the attempt `crashed` and claims the job again (the
job's backoff is 0 here, so the time is the fleet's own). A node (its process group): its
lease must expire and a live node's lease reaper requeue the job, so the time is about the
lease plus up to one reaper interval; both are short here and reported.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg

import jobfleet
from jobfleet.bench import scratch
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchNode, started_nodes, wait_until

WAIT_SECONDS = 60.0
# Long enough never to finish while we watch; the job is killed, never completed.
SLEEP_JOB = {"seconds": 600}
RUNNING_SINCE = """
SELECT extract(epoch FROM started_at) FROM jobs
WHERE id = %(id)s AND state = 'running' AND started_at > to_timestamp(%(after)s)
  AND split_part(locked_by, '/', 1) = ANY(%(nodes)s)
"""


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    reaper_interval = sizes.node_lease_seconds / 2
    with scratch.scratch_database(ctx.server, "recovery") as url:
        ctx.step(f"recovery: kill -9 of a child, {sizes.child_kills} times")
        child = child_kills(ctx, url, sizes.child_kills)
        env = {
            "JOBFLEET_LEASE_SECONDS": f"{sizes.node_lease_seconds:g}",
            "JOBFLEET_REAPER_INTERVAL_SECONDS": f"{reaper_interval:g}",
        }
        node = []
        for i in range(sizes.node_kills):
            ctx.step(f"recovery: kill -9 of a node ({i + 1}/{sizes.node_kills})")
            scratch.reset(url)
            node.append(node_kill(ctx, url, env))
    return {
        "child_ms": child,
        "child_median_ms": median(child),
        "node_ms": node,
        "node_median_ms": median(node),
        "lease_seconds": sizes.node_lease_seconds,
        "reaper_interval_seconds": reaper_interval,
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def new_sleep_job(conn: psycopg.Connection[Any]) -> int:
    return jobfleet.enqueue(conn, "sleep", SLEEP_JOB, backoff="fixed:0", max_attempts=100)


def running_since(
    conn: psycopg.Connection[Any], job: int, after: float, nodes: list[str]
) -> float | None:
    row = conn.execute(RUNNING_SINCE, {"id": job, "after": after, "nodes": nodes}).fetchone()
    return None if row is None else float(row[0])


def wait_running(conn: psycopg.Connection[Any], job: int, after: float, nodes: list[str]) -> float:
    found: list[float] = []

    def check() -> bool:
        since = running_since(conn, job, after, nodes)
        if since is not None:
            found.append(since)
        return since is not None

    wait_until(check, WAIT_SECONDS, f"job {job} running on {', '.join(nodes)}", pause=0.001)
    return found[-1]


def child_kills(ctx: Context, url: str, times: int) -> list[float]:
    """One node with one worker runs a long job; kill its worker `times` times."""
    results = []
    with started_nodes() as started, psycopg.connect(url, autocommit=True) as conn:
        node = BenchNode(url, "bench-a", workers=1, log_dir=ctx.log_dir)
        started.append(node)
        job = new_sleep_job(conn)
        wait_running(conn, job, 0.0, ["bench-a"])
        for _ in range(times):
            wait_until(lambda: executing(conn, job), WAIT_SECONDS, f"a worker to run job {job}")
            # One worker: the replaced one may linger a moment until its parent reaps it.
            (pid,) = one_worker(node)
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            since = wait_running(conn, job, killed_at, ["bench-a"])
            results.append((since - killed_at) * 1000)
        node.kill()
    return results


def one_worker(node: BenchNode) -> list[int]:
    """The node's worker pids once it has exactly one: the one replaced may linger a moment
    until its parent reaps it."""
    seen: list[int] = []

    def single() -> bool:
        seen[:] = node.children()
        return len(seen) == 1

    wait_until(single, WAIT_SECONDS, "the node to have one worker")
    return seen


def executing(conn: psycopg.Connection[Any], job: int) -> bool:
    """The job is held and its worker has been told (its attempt is still running a moment
    after the claim): the worker is running it, so killing the worker kills the attempt."""
    row = conn.execute(
        "SELECT now() - started_at > interval '50 milliseconds' FROM jobs "
        "WHERE id = %s AND state = 'running'",
        (job,),
    ).fetchone()
    return bool(row and row[0])


def node_kill(ctx: Context, url: str, env: dict[str, str]) -> float:
    """Node a holds a long job, node b idles; kill a's whole process group."""
    with started_nodes() as started, psycopg.connect(url, autocommit=True) as conn:
        a = BenchNode(url, "bench-a", workers=1, env=env, log_dir=ctx.log_dir)
        started.append(a)
        job = new_sleep_job(conn)
        wait_running(conn, job, 0.0, ["bench-a"])
        b = BenchNode(url, "bench-b", workers=1, env=env, log_dir=ctx.log_dir)
        started.append(b)
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM nodes WHERE name = 'bench-b'").fetchone()[0],  # type: ignore[index]
            WAIT_SECONDS,
            "node bench-b to register",
        )
        killed_at = time.time()
        a.kill()
        since = wait_running(conn, job, killed_at, ["bench-b"])
        b.kill()
    return (since - killed_at) * 1000
