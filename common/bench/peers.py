"""Peers, same run, same database server, same job count and worker processes: procrastinate,
pgqueuer and Celery (on a Redis started here), each with the settings its documentation gives
for short jobs, running a no-op task. Each is timed like `jobfleet supervisor --burst`: from
starting its worker processes until they have run everything.

They come with the optional extra (`pip install .[bench]`); without it this scenario says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobfleet.bench import scratch, throughput
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError

PEERS: dict[str, tuple[str, ...]] = {
    "procrastinate": ("procrastinate",),
    "pgqueuer": ("pgqueuer", "asyncpg"),
    "celery": ("celery", "redis"),
}
RUN_TIMEOUT = 300.0


@dataclass(frozen=True)
class Sleepers:
    """The `io` scenario's load for a peer: `jobs` jobs that wait `seconds` each, on `workers`
    processes running `concurrency` jobs each at once."""

    jobs: int
    seconds: float
    workers: int
    concurrency: int

    @property
    def ideal_seconds(self) -> float:
        return self.jobs * self.seconds / (self.workers * self.concurrency)


def missing(modules: Sequence[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def run(ctx: Context) -> dict[str, Any]:
    if all(missing(mods) for mods in PEERS.values()):
        return {"skipped": "peers not installed: pip install '.[bench]' (or `make bench`)"}
    from jobfleet.bench import peer_celery, peer_pgqueuer, peer_procrastinate

    quiet_peer_logs()

    jobs, workers = ctx.sizes.peer_jobs, ctx.workers
    drivers: dict[str, Callable[[Context, str, int, int], dict[str, Any]]] = {
        "procrastinate": peer_procrastinate.measure,
        "pgqueuer": peer_pgqueuer.measure,
        "celery": peer_celery.measure,
    }
    results: dict[str, Any] = {}
    with scratch.scratch_database(ctx.server, "peers") as url:
        ctx.step(f"peers: jobfleet, {jobs:,} noop jobs")
        scratch.fill(url, jobs)
        ours = throughput.measured(url, jobs, throughput.burst(ctx, url))
        for name, measure in drivers.items():
            absent = missing(PEERS[name])
            if absent:
                results[name] = {"skipped": f"not installed: {', '.join(absent)}"}
                continue
            ctx.step(f"peers: {name}, {jobs:,} noop jobs")
            try:
                results[name] = measure(ctx, url, jobs, workers)
            except Exception as exc:  # a peer that fails must not hide the others
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    ours["jobs_per_s"] = ours["wall_jobs_per_s"]  # on the peers' terms: start to exit
    return {"jobs": jobs, "workers": workers, "jobfleet": ours, "peers": results}


def quiet_peer_logs() -> None:
    """Their INFO lines (one per batch deferred) are noise under the progress bar."""
    for name in (*PEERS, "kombu"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_workers(argv: Sequence[str], count: int, env: Mapping[str, str] | None = None) -> float:
    """Start `count` copies of a peer's worker at once; the seconds until all exited 0."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=RUN_TIMEOUT)
            if proc.returncode != 0:
                tail = err.decode(errors="replace").strip()[-600:]
                raise BenchError(f"{' '.join(argv[:4])} exited {proc.returncode}: {tail}")
        return time.perf_counter() - started
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def rate(jobs: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds, **extra}
