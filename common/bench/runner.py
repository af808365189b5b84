"""`jobfleet bench`: run the chosen scenarios one after another and report.

A scenario that fails is reported with its error and the others still run; the command then
exits 1. Nothing is left behind: scratch databases are dropped and nodes killed on the way out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobfleet.bench import (
    ON_REQUEST,
    SCENARIOS,
    ceiling,
    enqueue,
    history,
    idle,
    iobound,
    latency,
    limits,
    peers,
    recovery,
    report,
    scaling,
    scratch,
    soak,
    throughput,
    transactional,
)
from jobfleet.bench.context import QUICK, Context, Sizes
from jobfleet.bench.nodes import node_logs
from jobfleet.bench.progress import Progress
from jobfleet.options import parse_duration
from jobfleet.settings import Settings

Scenario = Callable[[Context], dict[str, Any]]
RUNNERS: dict[str, Scenario] = {
    "ceiling": ceiling.run,
    "drain": throughput.run_drain,
    "million": throughput.run_million,
    "cpu": throughput.run_cpu,
    "io": iobound.run,
    "transactional": transactional.run,
    "enqueue": enqueue.run,
    "latency": latency.run,
    "backlog": throughput.run_backlog,
    "nodes": scaling.run,
    "limits": limits.run,
    "history": history.run,
    "recovery": recovery.run,
    "idle": idle.run,
    "peers": peers.run,
    "soak": soak.run,
}
assert tuple(RUNNERS) == SCENARIOS


def run_bench(args: argparse.Namespace, config: Settings) -> int:
    names = chosen(args.scenario)
    sizes = sized(QUICK if args.quick else Sizes(), args.jobs)
    if args.duration is not None:
        sizes = dataclasses.replace(sizes, soak_seconds=parse_duration("--duration", args.duration))
    workers = args.workers or len(os.sched_getaffinity(0)) or 1
    server = scratch.server_url(config)
    compile_package()
    results = run(names, server=server, workers=workers, sizes=sizes)
    results["quick"] = bool(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report.text(results))
    failed = [n for n, r in results["scenarios"].items() if "error" in r]
    return 1 if failed else 0


def compile_package() -> None:
    """Bytecode for jobfleet's modules before anything is timed, as `pip install` leaves a
    regular install. An editable install run with PYTHONDONTWRITEBYTECODE set (as on this
    machine) has none, and each supervisor a scenario starts compiled the package again:
    60-70 ms of its start to exit that a user's installation does not pay. Up-to-date files
    are left alone; a package that cannot be written to is timed as it is."""
    import compileall

    # The package as imported (for an editable install, its tree of links, not the sources).
    compileall.compile_dir(str(Path(__file__).parent.parent), quiet=2)


def chosen(requested: list[str] | None) -> list[str]:
    if not requested:
        return [n for n in SCENARIOS if n not in ON_REQUEST]
    names = [n.strip() for item in requested for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(
            f"--scenario: unknown {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})"
        )
    return [n for n in SCENARIOS if n in names]


def sized(base: Sizes, jobs: int | None) -> Sizes:
    """--jobs N sets the job count of the throughput scenarios."""
    if jobs is None:
        return base
    return dataclasses.replace(
        base, ceiling_jobs=jobs, drain_jobs=(jobs,), scale_jobs=jobs, peer_jobs=jobs
    )


def run(names: list[str], *, server: str, workers: int, sizes: Sizes) -> dict[str, Any]:
    started = time.monotonic()
    progress = Progress(len(names))
    scenarios: dict[str, dict[str, Any]] = {}
    with node_logs() as log_dir:
        ctx = Context(
            server=server, workers=workers, sizes=sizes, progress=progress, log_dir=log_dir
        )
        for name in names:
            ctx.step(name)
            scenario_started = time.monotonic()
            try:
                result = RUNNERS[name](ctx)
            except Exception as exc:  # one broken scenario must not hide the others' figures
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["seconds"] = time.monotonic() - scenario_started
            scenarios[name] = result
            progress.advance()
    progress.close()
    results: dict[str, Any] = {
        "machine": machine(server),
        "workers": workers,
        "sizes": dataclasses.asdict(sizes),
        "scenarios": scenarios,
        "seconds": time.monotonic() - started,
        "scratch_databases": list(scratch.created),
    }
    results["ratios"] = report.ratios(scenarios)
    return results


def machine(server: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **scratch.server_facts(server),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
