"""Peers, same run, same database server, same job count and worker processes: procrastinate,
pgqueuer, Celery (on a Redis started here), Graphile Worker (Node), DBOS, Chancy and Oban for
Python, each with the settings its documentation gives for short jobs, running a no-op task in
a scratch database of its own. Each is timed like `jobfleet supervisor --burst`: from starting
its worker processes until they have run everything.

The Python ones come with the optional extra (`pip install .[bench]`); Graphile Worker is
installed with npm into the bench's cache, Oban for Python into a venv of its own on a Python
3.12+ found here. A peer that cannot run says why (`skipped`); one that fails says how
(`error`); neither hides the others.
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

# The `io` scenario's peers: the Python modules each needs (the [bench] extra).
PEERS: dict[str, tuple[str, ...]] = {
    "procrastinate": ("procrastinate",),
    "pgqueuer": ("pgqueuer", "asyncpg"),
    "celery": ("celery", "redis"),
}
# The no-op drain's peers, in the order they run: the Python modules each needs from the
# [bench] extra (none for those that bring their own runtime: Graphile Worker is Node's, Oban
# for Python runs on a Python 3.12+ of its own).
DRAIN_PEERS: dict[str, tuple[str, ...]] = {
    **PEERS,
    "graphile-worker": (),
}
RUN_TIMEOUT = 300.0
# Set to 1, the bench installs nothing (npm, a venv): a peer not yet installed is skipped.
OFFLINE_ENV = "JOBFLEET_BENCH_OFFLINE"
Measure = Callable[[Context, str, int, int], dict[str, Any]]


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


def offline(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def skip_reason(absent: Sequence[str], unavailable: str | None) -> str | None:
    """Why a peer cannot run here (its missing Python modules first), or None when it can."""
    if absent:
        return f"not installed: {', '.join(absent)} (pip install '.[bench]', or `make bench`)"
    return unavailable or None


def drivers() -> dict[str, tuple[Callable[[], str | None], Measure]]:
    """Each drain peer's (why it cannot run here, or None; its measure). Imported only now:
    the peer modules import this one."""
    from jobfleet.bench import peer_celery, peer_graphile, peer_pgqueuer, peer_procrastinate

    def runs_here() -> str | None:
        return None

    return {
        "procrastinate": (runs_here, peer_procrastinate.measure),
        "pgqueuer": (runs_here, peer_pgqueuer.measure),
        "celery": (runs_here, peer_celery.measure),
        "graphile-worker": (peer_graphile.unavailable, peer_graphile.measure),
    }


def run(ctx: Context) -> dict[str, Any]:
    quiet_peer_logs()
    jobs, workers = ctx.sizes.peer_jobs, ctx.workers
    results: dict[str, Any] = {}
    with scratch.scratch_database(ctx.server, "peers") as url:
        ctx.step(f"peers: jobfleet, {jobs:,} noop jobs")
        scratch.fill(url, jobs)
        ours = throughput.measured(url, jobs, throughput.burst(ctx, url))
        for name, (unavailable, measure) in drivers().items():
            try:
                reason = skip_reason(missing(DRAIN_PEERS[name]), unavailable())
                if reason:
                    results[name] = {"skipped": reason}
                    continue
                ctx.step(f"peers: {name}, {jobs:,} noop jobs")
                with scratch.scratch_database(ctx.server, f"peers_{name}") as theirs:
                    results[name] = measure(ctx, theirs, jobs, workers)
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
