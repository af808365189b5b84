"""Scenario 5, latency: from the start of the enqueue call to the handler's first line
(`start`), and to the job's end (`finish`).

Idle, the way Graphile Worker's own latency test measures it: one job at a time, back to back,
the next enqueued as soon as the last one started, on a node that goes back to waiting
(LISTEN) in between. The handler (`worker/bench_latency.py`) sends the time of its first line
over UDP, so the bench hears of the start at once instead of polling the database; the finish
is the worker's `finished_at`. All three times are this host's clock. After a pause: the same,
with a pause before each job so that the machine's CPUs go idle too (waking them is part of
what a job enqueued now and then waits for). Under load: jobs offered at a steady rate in
small batches while the node keeps up with them, from the database's clock (`created_at`) to
the worker's (`started_at`, `finished_at`).
"""

from __future__ import annotations

import socket
import time
from contextlib import closing
from typing import Any

import psycopg

import jobfleet
from jobfleet.bench import scratch
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError, BenchNode, started_nodes, wait_until
from jobfleet.worker import bench_latency

WAIT_SECONDS = 60.0
LOAD_TICK = 0.01  # the loader enqueues one batch this often
WARM_UP_SAMPLES = 20
HANDLERS = ("--handlers", bench_latency.__name__)

LATENCIES = """
SELECT extract(epoch FROM started_at - created_at) * 1000,
       extract(epoch FROM finished_at - created_at) * 1000
FROM jobs WHERE id = ANY(%(ids)s) AND state = 'succeeded'
"""

FINISHED_AT = """
SELECT id, extract(epoch FROM finished_at)::float8
FROM jobs WHERE id = ANY(%(ids)s) AND state = 'succeeded'
"""

# When each probe's worker started it (`started_at`: the worker's clock, written with its
# outcome), for the steps.
WORKER_STARTED_AT = """
SELECT id, extract(epoch FROM started_at)::float8
FROM jobs WHERE id = ANY(%(ids)s) AND state = 'succeeded' AND attempt = 1
"""


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max by nearest rank (no interpolation between samples)."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": ordered[-1]}


def summary(jobs: int, start: list[float], finish: list[float]) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "succeeded": len(finish),
        "start_ms": percentiles(start),
        "finish_ms": percentiles(finish),
        "start_cdf_ms": sorted(start),
        "finish_cdf_ms": sorted(finish),
    }


def latencies(url: str, ids: list[int]) -> dict[str, Any]:
    """From the database's clock at enqueue to the worker's at start and at finish."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(LATENCIES, {"ids": ids}).fetchall()
    return summary(len(ids), [float(r[0]) for r in rows], [float(r[1]) for r in rows])


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    with scratch.scratch_database(ctx.server, "latency") as url:
        with started_nodes() as started:
            node = BenchNode(
                url, "bench-1", workers=ctx.workers, extra_args=HANDLERS, log_dir=ctx.log_dir
            )
            started.append(node)
            with psycopg.connect(url, autocommit=True) as conn, probe_socket() as probes:
                ctx.step("latency: warming up")
                one_by_one(conn, probes, WARM_UP_SAMPLES, gap=0.0)
                ctx.step(f"latency: {sizes.latency_idle_samples} jobs one at a time, back to back")
                idle = one_by_one(conn, probes, sizes.latency_idle_samples, gap=0.0)
                ctx.step(
                    f"latency: {sizes.latency_paused_samples} jobs one at a time, "
                    f"{sizes.latency_idle_gap * 1000:g} ms apart"
                )
                paused = one_by_one(
                    conn, probes, sizes.latency_paused_samples, gap=sizes.latency_idle_gap
                )
            rate, seconds = sizes.latency_load_rate, sizes.latency_load_seconds
            ctx.step(f"latency: {rate:,} jobs/s offered for {seconds:g} s")
            load_ids, offered = under_load(url, rate, seconds)
            node.stop()
        load = latencies(url, load_ids)
    load["offered_jobs_per_s"] = offered
    paused["gap_ms"] = sizes.latency_idle_gap * 1000
    from jobfleet.bench import peer_graphile  # it reads percentiles() from here

    with scratch.scratch_database(ctx.server, "latency_graphile") as url:
        # The fastest peer's idle latency by its own test, after ours: the same samples.
        graphile = peer_graphile.graphile_latency(ctx, url, sizes.latency_idle_samples)
    return {
        "idle": idle,
        "paused": paused,
        "load": load,
        "workers": ctx.workers,
        "graphile": graphile,
    }


def probe_socket() -> closing[socket.socket]:
    """Where the probes' datagrams arrive (a port on 127.0.0.1 of the system's choosing)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT_SECONDS)
    return closing(sock)


def one_by_one(
    conn: psycopg.Connection[Any], probes: socket.socket, count: int, *, gap: float
) -> dict[str, Any]:
    """`count` probes, each enqueued once the last one started (after a pause of `gap`):
    from the start of each enqueue call to its handler's first line, and to its finish."""
    port = probes.getsockname()[1]
    began: dict[int, float] = {}  # job id: when its enqueue call began
    returned: dict[int, float] = {}  # and when it returned
    ran: dict[int, float] = {}  # and when its handler's first line ran
    start: list[float] = []
    for sample in range(count):
        if gap:
            time.sleep(gap)
        called = time.time()
        job = jobfleet.enqueue(conn, bench_latency.PROBE_TYPE, {"sample": sample, "port": port})
        returned[job] = time.time()
        began[job] = called
        while True:  # datagrams of an earlier sample (a retried job) are passed over
            try:
                heard, at = probes.recv(64).split()
            except TimeoutError:
                raise BenchError(f"job {job} did not start within {WAIT_SECONDS:g} s") from None
            if int(heard) == sample:
                ran[job] = float(at)
                start.append((float(at) - called) * 1000)
                break
    ids = list(began)
    wait_until(lambda: all_succeeded(conn, min(ids), max(ids)), WAIT_SECONDS, "the probes")
    finished = conn.execute(FINISHED_AT, {"ids": ids}).fetchall()
    finish = [(float(at) - began[job]) * 1000 for job, at in finished]
    taken = dict(conn.execute(WORKER_STARTED_AT, {"ids": ids}).fetchall())
    return {**summary(count, start, finish), "steps_ms": steps(began, returned, taken, ran)}


# The steps of enqueue -> start, in order: each one's name and what it runs from and to.
# "to the worker" can be below 0 on a busy machine: the NOTIFY leaves at the commit, and the
# node may claim (without waiting for its flush) and start the job before the client process
# is scheduled to read the commit's reply.
STEPS = (
    ("enqueue call", "the call's start to its return (insert, NOTIFY, commit)"),
    ("to the worker", "its return to the worker starting the job (NOTIFY, claim, hand-off)"),
    ("worker to handler", "the worker's start to the handler's first line"),
)


def steps(
    began: dict[int, float],
    returned: dict[int, float],
    taken: dict[int, float],
    ran: dict[int, float],
) -> dict[str, float]:
    """Where enqueue -> start goes, step by step: each step's median over the jobs seen at
    every stamp (all on this host's clock). The
    medians need not add up to the total's."""
    jobs = [j for j in began if j in returned and j in taken and j in ran]
    if not jobs:
        return {}
    stamps = [(began[j], returned[j], taken[j], ran[j]) for j in jobs]
    return {
        name: percentiles([(s[i + 1] - s[i]) * 1000 for s in stamps])["p50"]
        for i, (name, _) in enumerate(STEPS)
    }


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
            ids += jobfleet.enqueue_many(conn, bench_latency.NOOP_TYPE, [None] * per_tick)
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
