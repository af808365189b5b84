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

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import psycopg

from jobfleet.bench import scratch, throughput
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError, wait_until

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
    "dbos": ("dbos",),
    "chancy": ("chancy",),
    "oban": (),
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
    from jobfleet.bench import (
        peer_celery,
        peer_chancy,
        peer_dbos,
        peer_graphile,
        peer_oban,
        peer_pgqueuer,
        peer_procrastinate,
    )

    def runs_here() -> str | None:
        return None

    return {
        "procrastinate": (runs_here, peer_procrastinate.measure),
        "pgqueuer": (runs_here, peer_pgqueuer.measure),
        "celery": (runs_here, peer_celery.measure),
        "graphile-worker": (peer_graphile.unavailable, peer_graphile.measure),
        "dbos": (runs_here, peer_dbos.measure),
        "chancy": (runs_here, peer_chancy.measure),
        "oban": (peer_oban.unavailable, peer_oban.measure),
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
    """Their INFO lines (one per batch deferred, DBOS's client settings) are noise under the
    progress bar."""
    for name in (*DRAIN_PEERS, "kombu"):
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


def run_until(argv: Sequence[str], count: int, url: str, left: str) -> float:
    """For peers whose workers never exit on an empty queue: start `count` copies at once; the
    seconds until the query `left` counts no job left (on one connection, every 50 ms: light
    beside the workers), then stop them. A worker that exits first is an error."""
    with contextlib.ExitStack() as stack:
        # stderr to files: a pipe nobody reads while the run lasts would fill and stall a worker
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(count)]
        return _run_until(argv, url, left, logs)


def _run_until(argv: Sequence[str], url: str, left: str, logs: Sequence[IO[bytes]]) -> float:
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        with psycopg.connect(url, autocommit=True) as conn:

            def ended() -> bool:
                row = conn.execute(left).fetchone()  # type: ignore[arg-type]
                return row is not None and row[0] == 0

            wait_until(
                lambda: any(p.poll() is not None for p in procs) or ended(),
                RUN_TIMEOUT,
                f"{' '.join(argv[:4])} to run every job",
                pause=0.05,
            )
        seconds = time.perf_counter() - started
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-600:]
                raise BenchError(f"a worker exited {proc.returncode} early: {tail}")
        return seconds
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
