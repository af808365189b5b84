"""Graphile Worker (Node) as a peer. The bench installs `graphile-worker` with npm, once, into a
cache directory outside the repository (`$XDG_CACHE_HOME/jobfleet-bench`, else
`~/.cache/jobfleet-bench`); without node or npm it says so and skips. The Node side is
`graphile/peer.js` (package data), run with NODE_PATH pointing at that install.

Drain: its schema in a database of its own, the no-op jobs added in bulk (`addJobs`), then
`workers` Node processes of `runOnce` (exit once the queue is empty) tuned as its perfTest
tunes them for short jobs (24 jobs at once, a local queue of 500, completions batched),
timed from their start to their exit.

Latency (`graphile_latency`, for the latency scenario): its own latencyTest method, one job at
a time, back to back, from the start of the add_job call to the handler's first line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from jobfleet.bench.context import Context
from jobfleet.bench.latency import percentiles
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import OFFLINE_ENV, offline, rate, run_workers
from jobfleet.bench.scratch import scalar

VERSION = "0.17.3"  # pinned: figures from one run to the next compare the same code
CONCURRENCY = 24  # jobs at once per process, its perfTest's
LOCAL_QUEUE = 500
SCRIPT = Path(__file__).with_name("graphile") / "peer.js"
INSTALL_TIMEOUT = 600.0
STEP_TIMEOUT = 300.0
PACKAGE_JSON = '{"name": "jobfleet-bench-graphile", "private": true}'
LEFT = "SELECT count(*) FROM graphile_worker._private_jobs"  # done jobs leave the table


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jobfleet-bench" / f"graphile-worker-{VERSION}"


def unavailable() -> str | None:
    """Why Graphile Worker cannot run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if offline() and not installed(cache_dir()):
        return f"graphile-worker not in {cache_dir()} and {OFFLINE_ENV} is set"
    return None


def installed(home: Path) -> bool:
    return (home / "node_modules" / "graphile-worker" / "package.json").is_file()


def install(home: Path | None = None) -> Path:
    """graphile-worker in the cache (installed the first time); its node_modules folder."""
    home = home or cache_dir()
    if not installed(home):
        home.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=".graphile-", dir=home.parent))
        try:
            (fresh / "package.json").write_text(PACKAGE_JSON)
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--omit=dev",
                 f"graphile-worker@{VERSION}"],
                cwd=fresh, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise BenchError(f"npm install graphile-worker failed: {done.stderr[-600:]}")
            if not installed(home):  # another bench may have won the race: keep its copy
                fresh.rename(home)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return home / "node_modules"


def node_connection(url: str) -> dict[str, Any]:
    """node-postgres' connection fields for a libpq URL (a socket directory stays the host)."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    fields = {
        "host": params.get("host"),
        "port": int(params["port"]) if params.get("port") else None,
        "user": params.get("user"),
        "password": params.get("password"),
        "database": params.get("dbname"),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _env(url: str) -> dict[str, str]:
    return {
        "NODE_PATH": str(install()),
        "JOBFLEET_BENCH_PG": json.dumps(node_connection(url)),
        "NO_LOG_SUCCESS": "1",
    }


def _node(env: Mapping[str, str], command: str, count: int) -> str:
    done = subprocess.run(
        ["node", str(SCRIPT), command, str(count)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=STEP_TIMEOUT,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"node peer.js {command} exited {done.returncode}: {done.stderr[-600:]}")
    return done.stdout


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    env = _env(url)
    _node(env, "fill", jobs)
    seconds = run_workers(["node", str(SCRIPT), "work", str(CONCURRENCY)], workers, env)
    left = scalar(url, LEFT)
    if left:
        raise BenchError(f"Graphile Worker's processes exited with {left} jobs not done")
    return rate(jobs, seconds, concurrency=CONCURRENCY, local_queue=LOCAL_QUEUE, version=VERSION)


def graphile_latency(ctx: Context, url: str, samples: int) -> dict[str, Any]:
    """Graphile Worker's enqueue -> start latency by its own method, in a database of the
    caller's (its schema is its own): {"samples", "p50", "p95", "p99", "max"} in ms, or
    {"skipped": why} where it cannot run, or {"error": what} when it failed."""
    reason = unavailable()
    if reason:
        return {"skipped": reason}
    ctx.step(f"latency: Graphile Worker, {samples} jobs back to back")
    try:
        ms = [float(v) for v in json.loads(_node(_env(url), "latency", samples))["ms"]]
    except Exception as exc:  # the caller's other figures stand without this one
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"samples": len(ms), **percentiles(ms), "method": "perfTest/latencyTest.js"}
