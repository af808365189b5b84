"""The table `jobfleet bench` prints: each scenario's lines, and its ratios against the
targets (ratios.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jobfleet.bench import history, limits
from jobfleet.bench.ratios import IO_LOADS, Scenarios
from jobfleet.bench.ratios import ratios as ratios
from jobfleet.cli import render


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
        if "ceiling_jobs_per_s" in d:
            rounds = ", ".join(_num(c) for c in d.get("ceiling_rounds", []))
            lines.append(
                (
                    "  raw ceiling, its rounds beside these",
                    f"{_num(d['ceiling_jobs_per_s'])} {JPS} (median of {rounds})",
                )
            )
        if "analysed" in d:
            lines.append(("  the same, analysed fill", _steady_and_wall(d["analysed"])))
    return lines


def _million(r: dict[str, Any]) -> Lines:
    lines = [(f"{r['jobs']:,} noop, fresh fill, {r['workers']} workers", _steady_and_wall(r))]
    if "ceiling_jobs_per_s" in r:
        lines.append(
            ("  raw ceiling, the same count beside it", f"{_num(r['ceiling_jobs_per_s'])} {JPS}")
        )
    return lines


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


def _transactional(r: dict[str, Any]) -> Lines:
    what = f"{r['jobs']:,} noop each, {r['workers']} workers, same run{_median_of(r['rounds'])}"
    return [
        (f"{what}: plain", f"{_num(r['plain']['jobs_per_s'])} {JPS}"),
        (
            f"{what}: transactional",
            f"{_num(r['transactional']['jobs_per_s'])} {JPS} ({r['tx_vs_plain']:.2f}x plain, "
            f"+{r['extra_worker_ms_per_job']:.2f} worker-ms a job)",
        ),
    ]


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
        *(
            (
                f"HTTP POST /jobs, {c['clients']} clients at once, {http['processes']} processes",
                f"{_num(c['jobs_per_s'])} {JPS}",
            )
            for c in http.get("clients", [])
        ),
    ]


def _latency(r: dict[str, Any]) -> Lines:
    lines = []
    modes = (
        ("idle", "idle, one at a time, back to back"),
        ("paused", "idle, one at a time after a pause"),
        ("load", "under load"),
    )
    for mode, label in modes:
        if mode not in r:  # results of a run from before the paused samples
            continue
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
        if m.get("steps_ms"):
            steps = " / ".join(f"{name} {_num(ms, 2)}" for name, ms in m["steps_ms"].items())
            lines.append((f"enqueue -> start, {label}: median of each step", f"{steps} ms"))
    return lines + _graphile_latency(r.get("graphile"))


def _graphile_latency(g: dict[str, Any] | None) -> Lines:
    """Graphile Worker's own latency method beside ours (peer_graphile.graphile_latency)."""
    what = "Graphile Worker: add_job -> handler's first line, back to back"
    if g is None:
        return []
    if "p50" not in g:
        why = g.get("skipped") or g.get("error")
        return [(what, f"{'skipped' if 'skipped' in g else 'error'}: {why}")]
    figures = " / ".join(f"{p} {_num(g.get(p), 2)}" for p in ("p50", "p95", "p99"))
    return [(f"{what} ({g['samples']} jobs)", f"{figures} ms")]


def _backlog(r: dict[str, Any]) -> Lines:
    return [
        (f"{r['drain']:,} off the top of {b['backlog']:,} queued", f"{_num(b['jobs_per_s'])} {JPS}")
        for b in r["runs"]
    ]


def _nodes(r: dict[str, Any]) -> Lines:
    lines = [(f"raw ceiling, {r['jobs']:,} jobs", f"{_num(r['ceiling_jobs_per_s'])} {JPS}")]
    for n in r["by_nodes"]:
        lines.append(
            (
                f"{r['jobs']:,} noop, {n['nodes']} node(s) x {n['workers_per_node']} workers",
                f"{_num(n['jobs_per_s'])} {JPS} steady ({_num(n['vs_one_node'], 2)}x one node, "
                f"{_num(n['vs_ceiling'], 2)}x ceiling), "
                f"{_num(n['connections_per_node'], 1)} connections a node",
            )
        )
    for w in r["by_workers"]:
        lines.append(
            (
                f"{r['jobs']:,} noop, 1 node x {w['workers']} workers",
                f"{_num(w['jobs_per_s'])} {JPS} steady ({_num(w['vs_ceiling'], 2)}x ceiling), "
                f"{_num(w['connections_per_node'], 1)} connections",
            )
        )
    return lines


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
    lines = [
        (
            f"idle node, {r['workers']} workers, {r['seconds_measured']:.0f} s",
            f"{r['cpu_percent']:.2f} % CPU, {r['queries_per_s']:.1f} queries/s",
        )
    ]
    f = r.get("fleet")
    if isinstance(f, dict):
        lines.append(
            (
                f"{f['nodes']} idle nodes x 1 worker, {f['seconds_measured']:.0f} s",
                f"{f['queries_per_s']:.1f} queries/s in all, {f['queries_per_s_per_node']:.2f} "
                f"a node; {f['connections_per_node']:.1f} connections a node; "
                f"{f['cpu_percent']:.1f} % CPU in all",
            )
        )
    return lines


def _peers(r: dict[str, Any]) -> Lines:
    ours_rate = r["jobfleet"]["jobs_per_s"]
    ours = (f"jobfleet, {r['jobs']:,} noop, {r['workers']} workers", f"{_num(ours_rate)} {JPS}")
    return [ours] + [
        (f"{p}, {r['jobs']:,} noop, {r['workers']} worker processes", _peer_figure(v, ours_rate))
        for p, v in r["peers"].items()
    ]


def _peer_figure(v: dict[str, Any], ours: float) -> str:
    """A peer's jobs/s and ours against it, or why it has no figure."""
    if "jobs_per_s" in v:
        return f"{_num(v['jobs_per_s'])} {JPS} (jobfleet {ours / v['jobs_per_s']:.1f}x)"
    if "skipped" in v:
        return f"skipped: {v['skipped']}"
    return f"error: {str(v.get('error')).splitlines()[0][:90]}"


def _soak(r: dict[str, Any]) -> Lines:
    rows = r["rows"]
    done = [row["finished_jobs_per_s"] for row in rows]
    p99 = [row["start_p99_ms"] for row in rows if row["start_p99_ms"] is not None]
    what = f"{_num(r['offered_jobs_per_s'])} {JPS} offered, {r['duration_seconds'] / 60:g} min"
    lines = [
        (
            what,
            f"{_num(min(done, default=None))}-{_num(max(done, default=None))} {JPS} done a "
            f"sample, start p99 {_num(min(p99, default=None), 1)}-"
            f"{_num(max(p99, default=None), 1)} ms",
        )
    ]
    growth = [f"{k} {v:.2f}x" for k, v in r["growth"].items() if v is not None]
    return [*lines, ("last half / first half", ", ".join(growth) or "-")]


# What each scenario's result says, a line a figure.
SCENARIO_LINES: dict[str, Callable[[dict[str, Any]], Lines]] = {
    "ceiling": _ceiling,
    "drain": _drain,
    "million": _million,
    "cpu": _cpu,
    "io": _io,
    "transactional": _transactional,
    "enqueue": _enqueue,
    "latency": _latency,
    "backlog": _backlog,
    "nodes": _nodes,
    "limits": limits.lines,
    "history": history.lines,
    "recovery": _recovery,
    "idle": _idle,
    "peers": _peers,
    "soak": _soak,
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
