"""Ratios against the targets, and the table `jobfleet bench` prints.

Targets are reported met or missed, never enforced: the figures depend on the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jobfleet.bench import limits
from jobfleet.cli import render

Scenarios = dict[str, dict[str, Any]]
# name: (what it compares, comparison, threshold); None where there is no target.
TARGETS: dict[str, tuple[str, str, float] | None] = {
    "noop_vs_ceiling": ("no-op drain / raw ceiling (steady rate)", ">=", 0.7),
    "noop_wall_vs_ceiling": ("no-op drain, start to exit / raw ceiling", ">=", 0.7),
    "million_wall_vs_ceiling": ("1M fresh fill, start to exit / raw ceiling", ">=", 0.8),
    "noop_vs_best_peer": ("no-op drain / best peer (same jobs, workers)", ">=", 10.0),
    "cpu_span_vs_ideal": ("CPU-bound, steady / ideal (work / workers)", "<=", 1.10),
    "cpu_wall_vs_ideal": ("CPU-bound, start to exit / ideal", "<=", 1.10),
    "io_async_wall_vs_ideal": ("I/O-bound async, start to exit / ideal", "<=", 1.15),
    "io_threads_wall_vs_ideal": ("I/O-bound threads, start to exit / ideal", "<=", 1.15),
    "io_async_vs_best_peer": ("I/O-bound async, jobs/s / best peer (same load)", ">=", 1.0),
    "io_threads_vs_best_peer": ("I/O-bound threads, jobs/s / best peer (same load)", ">=", 1.0),
    "bulk_vs_raw_copy": ("enqueue_many / raw COPY", ">=", 0.5),
    "backlog_large_vs_small": ("throughput over the big backlog / the small one", ">=", 0.9),
    "limited_vs_unlimited": ("no-op drain with limits that never bind / without", ">=", 0.8),
    "idle_start_p50_ms": ("idle enqueue -> start p50 (ms)", "<=", 5.0),
    "idle_start_p99_ms": ("idle enqueue -> start p99 (ms)", "<=", 20.0),
    "idle_cpu_percent": ("idle node CPU (% of one core)", "<", 1.0),
    "idle_queries_per_s": ("idle node queries per second", "<=", 1.0),
}
# Ratios reported without a target: the fresh-fill figures' analysed counterparts.
UNTARGETED = {
    "noop_vs_ceiling_analysed": "no-op drain / raw ceiling, both on analysed fills",
    "noop_wall_vs_ceiling_analysed": "no-op drain, start to exit / raw ceiling, analysed",
    "limited_wall_vs_unlimited": "no-op drain with limits that never bind / without, start to exit",
}


def _get(scenarios: Scenarios, name: str, *path: Any) -> Any:
    """scenarios[name][path...], or None when the scenario failed, was skipped or lacks it."""
    value: Any = scenarios.get(name)
    if not isinstance(value, dict) or "error" in value or "skipped" in value:
        return None
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _div(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b <= 0:
        return None
    return float(a) / float(b)


def peer_rates(scenarios: Scenarios) -> dict[str, float]:
    """Each peer that ran: its jobs/s."""
    found = _get(scenarios, "peers", "peers") or {}
    return {
        name: float(r["jobs_per_s"])
        for name, r in found.items()
        if isinstance(r, dict) and "jobs_per_s" in r
    }


def ours_for_peers(scenarios: Scenarios) -> float | None:
    """Our rate on the peers' terms: the same job count, timed the same way (start to end of
    the worker processes)."""
    value = _get(scenarios, "peers", "jobfleet", "jobs_per_s")
    return float(value) if isinstance(value, int | float) else None


IO_LOADS = ("async", "threads")


def io_ratios(scenarios: Scenarios) -> dict[str, float | None]:
    """Per `io` load: ours against the ideal, and against the fastest peer on the same load."""
    values: dict[str, float | None] = {}
    for load in IO_LOADS:
        values[f"io_{load}_wall_vs_ideal"] = _get(
            scenarios, "io", load, "jobfleet", "wall_vs_ideal"
        )
        found = _get(scenarios, "io", load, "peers") or {}
        rates = [float(r["jobs_per_s"]) for r in found.values() if "jobs_per_s" in r]
        ours = _get(scenarios, "io", load, "jobfleet", "wall_jobs_per_s")
        values[f"io_{load}_vs_best_peer"] = _div(ours, max(rates)) if rates else None
    return values


def ratios(scenarios: Scenarios) -> list[dict[str, Any]]:
    drains = _get(scenarios, "drain", "runs") or []
    biggest = max(drains, key=lambda r: r["jobs"]) if drains else None
    analysed = (biggest or {}).get("analysed") or {}
    backlog = _get(scenarios, "backlog", "runs") or []
    ceiling = _get(scenarios, "ceiling", "jobs_per_s")
    ceiling_analysed = _get(scenarios, "ceiling", "analysed", "jobs_per_s")
    values: dict[str, float | None] = {
        "noop_vs_ceiling": _div(biggest["jobs_per_s"] if biggest else None, ceiling),
        "noop_wall_vs_ceiling": _div(biggest["wall_jobs_per_s"] if biggest else None, ceiling),
        "million_wall_vs_ceiling": _div(_get(scenarios, "million", "wall_jobs_per_s"), ceiling),
        "noop_vs_ceiling_analysed": _div(analysed.get("jobs_per_s"), ceiling_analysed),
        "noop_wall_vs_ceiling_analysed": _div(analysed.get("wall_jobs_per_s"), ceiling_analysed),
        "cpu_span_vs_ideal": _get(scenarios, "cpu", "span_vs_ideal"),
        "cpu_wall_vs_ideal": _get(scenarios, "cpu", "wall_vs_ideal"),
        **io_ratios(scenarios),
        "bulk_vs_raw_copy": _get(scenarios, "enqueue", "bulk_vs_raw_copy"),
        "backlog_large_vs_small": _div(backlog[-1]["jobs_per_s"], backlog[0]["jobs_per_s"])
        if len(backlog) >= 2
        else None,
        "limited_vs_unlimited": _div(
            _get(scenarios, "limits", "limited", "jobs_per_s"),
            _get(scenarios, "limits", "plain", "jobs_per_s"),
        ),
        "limited_wall_vs_unlimited": _div(
            _get(scenarios, "limits", "limited", "wall_jobs_per_s"),
            _get(scenarios, "limits", "plain", "wall_jobs_per_s"),
        ),
        "idle_start_p50_ms": _get(scenarios, "latency", "idle", "start_ms", "p50"),
        "idle_start_p99_ms": _get(scenarios, "latency", "idle", "start_ms", "p99"),
        "idle_cpu_percent": _get(scenarios, "idle", "cpu_percent"),
        "idle_queries_per_s": _get(scenarios, "idle", "queries_per_s"),
    }
    peers = peer_rates(scenarios)
    ours = ours_for_peers(scenarios)
    if peers:
        best = max(peers.values())
        values["noop_vs_best_peer"] = _div(ours, best)
        for name, peer_rate in peers.items():
            values[f"noop_vs_{name}"] = _div(ours, peer_rate)
    found = []
    for name, value in values.items():
        if value is None:
            continue
        target = TARGETS.get(name)
        entry: dict[str, Any] = {"name": name, "value": value}
        if target is not None:
            what, op, threshold = target
            entry.update(what=what, target=f"{op} {threshold:g}", met=_meets(value, op, threshold))
        elif name in UNTARGETED:
            entry.update(what=UNTARGETED[name], target=None)
        else:
            entry.update(what=f"no-op drain / {name.removeprefix('noop_vs_')}", target=None)
        found.append(entry)
    return found


def _meets(value: float, op: str, threshold: float) -> bool:
    checks: dict[str, Callable[[float, float], bool]] = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
    }
    return checks[op](value, threshold)


# -- text ---------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(scenario, measurement, figure) for every figure worth a line."""
    s: Scenarios = results["scenarios"]
    out: list[tuple[str, str, str]] = []
    for name, r in s.items():
        if "error" in r:
            out.append((name, "error", str(r["error"]).splitlines()[0][:90]))
            continue
        if "skipped" in r:
            out.append((name, "skipped", str(r["skipped"])))
            continue
        out.extend(_rows_of(name, r))
    return out


def _median_of(rounds: Any) -> str:
    return f", median of {len(rounds)}" if isinstance(rounds, list) and len(rounds) > 1 else ""


Lines = list[tuple[str, str]]  # (measurement, figure) of one scenario
JPS = "jobs/s"


def _rows_of(name: str, r: dict[str, Any]) -> list[tuple[str, str, str]]:
    lines = SCENARIO_LINES.get(name)
    return [] if lines is None else [(name, what, figure) for what, figure in lines(r)]


def _steady_and_wall(run: dict[str, Any]) -> str:
    return f"{_num(run['jobs_per_s'])} {JPS} steady, {_num(run['wall_jobs_per_s'])} start-to-exit"


def _ceiling(r: dict[str, Any]) -> Lines:
    what = f"{r['jobs']:,} jobs, {r['drainers']} drainers, batch {r['batch']}"
    lines = [(what + _median_of(r.get("rounds")), f"{_num(r['jobs_per_s'])} {JPS}")]
    if "analysed" in r:
        a = r["analysed"]
        lines.append(("  the same, analysed fill", f"{_num(a['jobs_per_s'])} {JPS}"))
    return lines


def _drain(r: dict[str, Any]) -> Lines:
    lines = []
    for d in r["runs"]:
        what = f"{d['jobs']:,} noop, {r['workers']} workers{_median_of(d.get('rounds'))}"
        lines.append((what, _steady_and_wall(d)))
        if "analysed" in d:
            lines.append(("  the same, analysed fill", _steady_and_wall(d["analysed"])))
    return lines


def _million(r: dict[str, Any]) -> Lines:
    return [(f"{r['jobs']:,} noop, fresh fill, {r['workers']} workers", _steady_and_wall(r))]


def _cpu(r: dict[str, Any]) -> Lines:
    return [
        (
            f"{r['jobs']} x {r['ms_per_job']} ms, {r['workers']} workers",
            f"{r['span_seconds']:.2f} s vs ideal {r['ideal_seconds']:.2f} s "
            f"({r['span_vs_ideal']:.3f}x; start-to-exit {r['wall_vs_ideal']:.3f}x)",
        )
    ]


def _io(r: dict[str, Any]) -> Lines:
    lines: Lines = []
    for load in IO_LOADS:
        run = r[load]
        what = (
            f"{load}: {run['jobs']:,} x {r['seconds_per_job']:g} s, concurrency "
            f"{run['concurrency']}, {r['workers']} workers (ideal {run['ideal_seconds']:.2f} s)"
        )
        ours = run["jobfleet"]
        lines.append(
            (
                f"{what}: jobfleet",
                f"{_num(ours['wall_jobs_per_s'])} {JPS}, {ours['wall_seconds']:.2f} s "
                f"({ours['wall_vs_ideal']:.3f}x ideal)",
            )
        )
        for peer, v in run["peers"].items():
            if "jobs_per_s" not in v:
                lines.append((f"{what}: {peer}", str(v.get("skipped") or v.get("error"))))
                continue
            how = f"{v['tasks']} tasks" if "tasks" in v else f"{v['pool']} pool"
            lines.append(
                (
                    f"{what}: {peer} ({how})",
                    f"{_num(v['jobs_per_s'])} {JPS}, {v['seconds']:.2f} s "
                    f"({v['wall_vs_ideal']:.3f}x ideal)",
                )
            )
    return lines


def _enqueue(r: dict[str, Any]) -> Lines:
    lines = [
        ("jobfleet.enqueue, a transaction each", f"{_num(r['single']['jobs_per_s'])} {JPS}"),
        ("jobfleet.enqueue_many (COPY)", f"{_num(r['bulk']['jobs_per_s'])} {JPS}"),
        ("raw COPY, same rows", f"{_num(r['raw_copy']['jobs_per_s'])} {JPS}"),
    ]
    http = r["http"]
    if "skipped" in http or "error" in http:
        return [*lines, ("HTTP", str(http.get("skipped") or http.get("error")))]
    return [
        *lines,
        ("HTTP POST /jobs", f"{_num(http['single']['jobs_per_s'])} {JPS}"),
        (
            f"HTTP POST /jobs:batch ({http['batch']['per_request']} a request)",
            f"{_num(http['batch']['jobs_per_s'])} {JPS}",
        ),
    ]


def _latency(r: dict[str, Any]) -> Lines:
    lines = []
    for mode, label in (("idle", "idle, one at a time"), ("load", "under load")):
        m = r[mode]
        extra = f", {_num(m['offered_jobs_per_s'])} jobs/s offered" if mode == "load" else ""
        for what in ("start", "finish"):
            p = m[f"{what}_ms"]
            lines.append(
                (
                    f"enqueue -> {what}, {label}{extra}",
                    f"p50 {_num(p.get('p50'), 2)} / p95 {_num(p.get('p95'), 2)} / "
                    f"p99 {_num(p.get('p99'), 2)} ms",
                )
            )
    return lines


def _backlog(r: dict[str, Any]) -> Lines:
    return [
        (f"{r['drain']:,} off the top of {b['backlog']:,} queued", f"{_num(b['jobs_per_s'])} {JPS}")
        for b in r["runs"]
    ]


def _nodes(r: dict[str, Any]) -> Lines:
    by_nodes = [
        (f"{n['nodes']} node(s) x {r['workers']} workers", _steady_and_wall(n))
        for n in r["by_nodes"]
    ]
    by_workers = [
        (f"1 node x {w['workers']} workers", _steady_and_wall(w)) for w in r["by_workers"]
    ]
    return by_nodes + by_workers


def _recovery(r: dict[str, Any]) -> Lines:
    return [
        (
            "kill -9 child -> job running again",
            f"median {_num(r['child_median_ms'], 1)} ms ({len(r['child_ms'])} kills)",
        ),
        (
            f"kill -9 node -> running elsewhere (lease {r['lease_seconds']:g} s, "
            f"reaper every {r['reaper_interval_seconds']:g} s)",
            f"median {_num(r['node_median_ms'])} ms ({len(r['node_ms'])} kills)",
        ),
    ]


def _idle(r: dict[str, Any]) -> Lines:
    return [
        (
            f"idle node, {r['workers']} workers, {r['seconds_measured']:.0f} s",
            f"{r['cpu_percent']:.2f} % CPU, {r['queries_per_s']:.1f} queries/s",
        )
    ]


def _peers(r: dict[str, Any]) -> Lines:
    ours = (
        f"jobfleet, {r['jobs']:,} noop, {r['workers']} workers",
        f"{_num(r['jobfleet']['jobs_per_s'])} {JPS}",
    )
    return [ours] + [
        (
            f"{p}, {r['jobs']:,} noop, {r['workers']} worker processes",
            f"{_num(v['jobs_per_s'])} {JPS}"
            if "jobs_per_s" in v
            else str(v.get("skipped") or v.get("error")),
        )
        for p, v in r["peers"].items()
    ]


# What each scenario's result says, a line a figure.
SCENARIO_LINES: dict[str, Callable[[dict[str, Any]], Lines]] = {
    "ceiling": _ceiling,
    "drain": _drain,
    "million": _million,
    "cpu": _cpu,
    "io": _io,
    "enqueue": _enqueue,
    "latency": _latency,
    "backlog": _backlog,
    "nodes": _nodes,
    "limits": limits.lines,
    "recovery": _recovery,
    "idle": _idle,
    "peers": _peers,
}


def ratio_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    out = []
    for r in results["ratios"]:
        verdict = "-" if r.get("met") is None else ("met" if r["met"] else "MISSED")
        out.append((r["what"], _num(r["value"], 3), r.get("target") or "-", verdict))
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return render.table(headers, rows, whole=True)


def text(results: dict[str, Any]) -> str:
    m = results["machine"]
    head = (
        f"jobfleet bench: {m['cores']} cores ({m['cpu_model']}), PostgreSQL "
        f"{m['postgres_version']} (fsync {m['fsync']}, synchronous_commit "
        f"{m['synchronous_commit']}), {results['seconds']:.0f} s"
    )
    body = table(["scenario", "measured", "result"], rows(results))
    ratio_table = table(["ratio", "value", "target", ""], ratio_rows(results))
    return f"{head}\n\n{body}\n\n{ratio_table}"
