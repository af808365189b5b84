"""Scenario `io`: I/O-bound jobs, many at once in each worker (issue 18).

Two loads, each timed start to exit like `cpu`, and each set against its ideal, the time the
waiting alone takes when every worker keeps its concurrency busy (jobs x seconds / (workers x
concurrency)):

- async: jobs that `await asyncio.sleep`, `concurrency=100`, on the worker's event loop;
- threads: jobs that block in `time.sleep`, `concurrency=20`, on the worker's threads.

Beside each, in the same run, the peers on the same job count, worker processes and
concurrency per process, each configured as its docs say for I/O-bound work: procrastinate and
pgqueuer with async tasks (for both loads: their way to wait on I/O), Celery with its thread
pool (its way). Peers are timed from the start of their worker processes to the last job run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobfleet.bench import peers, scratch, throughput
from jobfleet.bench.context import Context
from jobfleet.bench.peers import Sleepers
from jobfleet.worker import bench_handlers

HANDLERS = ("--handlers", bench_handlers.__name__)
# load name: (job type, concurrency per worker)
LOADS: dict[str, tuple[str, int]] = {
    "async": (bench_handlers.ASYNC_TYPE, bench_handlers.ASYNC_CONCURRENCY),
    "threads": (bench_handlers.THREAD_TYPE, bench_handlers.THREAD_CONCURRENCY),
}
Driver = Callable[[str, Sleepers], dict[str, Any]]


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    counts = {"async": sizes.io_async_jobs, "threads": sizes.io_thread_jobs}
    result: dict[str, Any] = {"seconds_per_job": sizes.io_seconds, "workers": ctx.workers}
    for name, (type, concurrency) in LOADS.items():
        load = Sleepers(counts[name], sizes.io_seconds, ctx.workers, concurrency)
        result[name] = {
            "jobs": load.jobs,
            "concurrency": concurrency,
            "ideal_seconds": load.ideal_seconds,
            "jobfleet": ours(ctx, name, type, load),
            "peers": theirs(ctx, name, load),
        }
    return result


def ours(ctx: Context, name: str, type: str, load: Sleepers) -> dict[str, Any]:
    payload = f'{{"seconds": {load.seconds}}}'
    with scratch.scratch_database(ctx.server, f"io_{name}") as url:
        scratch.fill(url, load.jobs, type=type, payload=payload)
        ctx.step(f"io: jobfleet, {load.jobs:,} {name} jobs of {load.seconds:g} s")
        wall = throughput.burst(ctx, url, extra_args=HANDLERS)
        result = throughput.measured(url, load.jobs, wall)
    return {**result, "wall_vs_ideal": wall / load.ideal_seconds}


def theirs(ctx: Context, name: str, load: Sleepers) -> dict[str, Any]:
    """Each installed peer's figures (or why it has none)."""
    drivers = _drivers()
    peers.quiet_peer_logs()
    found: dict[str, Any] = {}
    for peer, modules in peers.PEERS.items():
        absent = peers.missing(modules)
        if absent:
            found[peer] = {"skipped": f"not installed: {', '.join(absent)}"}
            continue
        ctx.step(f"io: {peer}, {load.jobs:,} {name} jobs of {load.seconds:g} s")
        try:
            with scratch.scratch_database(ctx.server, f"io_{peer}") as url:
                measured = drivers[peer](url, load)
        except Exception as exc:  # a peer that fails must not hide the others
            found[peer] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        found[peer] = {**measured, "wall_vs_ideal": measured["seconds"] / load.ideal_seconds}
    return found


def _drivers() -> dict[str, Driver]:
    """Imported only when the scenario runs: the peers come with the optional [bench] extra."""
    drivers: dict[str, Driver] = {}
    if not peers.missing(peers.PEERS["procrastinate"]):
        from jobfleet.bench import peer_procrastinate

        drivers["procrastinate"] = peer_procrastinate.measure_sleepers
    if not peers.missing(peers.PEERS["pgqueuer"]):
        from jobfleet.bench import peer_pgqueuer

        drivers["pgqueuer"] = peer_pgqueuer.measure_sleepers
    if not peers.missing(peers.PEERS["celery"]):
        from jobfleet.bench import peer_celery

        drivers["celery"] = peer_celery.measure_sleepers
    return drivers
