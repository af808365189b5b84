"""The bench's ratios against their targets: reported met or missed, never enforced (the
figures depend on the machine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Scenarios = dict[str, dict[str, Any]]
# name: (what it compares, comparison, threshold); None where there is no target.
TARGETS: dict[str, tuple[str, str, float] | None] = {
    "noop_vs_ceiling": ("no-op drain / raw ceiling beside it (steady rate)", ">=", 1.0),
    "noop_wall_vs_ceiling": ("no-op drain, start to exit / raw ceiling beside it", ">=", 0.85),
    "million_wall_vs_ceiling": (
        "1M fresh fill, start to exit / raw ceiling on a 1M fresh fill beside it",
        ">=",
        0.8,
    ),
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
    "pruning_vs_idle": ("no-op drain while its leader prunes 10M / nothing pruning", ">=", 0.9),
    "keyed_vs_unlimited": (
        "no-op drain with limits per key (1,000 keys) that never bind / without",
        ">=",
        0.6,
    ),
    "http_32_vs_1_client": ("HTTP POST /jobs, 32 clients / 1 client", ">=", 5.0),
    "idle_start_p50_ms": ("idle enqueue -> start p50 (ms)", "<=", 1.2),
    "idle_start_p99_ms": ("idle enqueue -> start p99 (ms)", "<=", 5.0),
    "idle_cpu_percent": ("idle node CPU (% of one core)", "<", 1.0),
    "idle_queries_per_s": ("idle node queries per second", "<=", 1.0),
    "idle_fleet_queries_per_s": ("50 idle nodes' queries per second, in all", "<", 50.0),
    "nodes_most_vs_best": ("no-op drain on the most nodes / the best node count", ">=", 0.8),
}
# Ratios reported without a target: the fresh-fill figures' analysed counterparts.
UNTARGETED = {
    "noop_vs_ceiling_analysed": "no-op drain / raw ceiling, both on analysed fills",
    "noop_wall_vs_ceiling_analysed": "no-op drain, start to exit / raw ceiling, analysed",
    "limited_wall_vs_unlimited": "no-op drain with limits that never bind / without, start to exit",
    "keyed_wall_vs_unlimited": "no-op drain with limits per key / without, start to exit",
    "tx_vs_plain": "transactional no-op drain / plain no-op drain (same run, same workers)",
    "pruning_flat_out_vs_idle": "no-op drain beside a pruner flat out / nothing pruning",
    "nodes_best_vs_ceiling": "no-op drain on the best node count / raw ceiling of that run",
    "million_wall_vs_ceiling_100k": "1M fresh fill, start to exit / the ceiling scenario (100k)",
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


def node_ratios(scenarios: Scenarios) -> dict[str, float | None]:
    """Many nodes: does the drain hold at the most nodes (no collapse from SKIP LOCKED
    contention), and how near the ceiling the best count comes."""
    runs = _get(scenarios, "nodes", "by_nodes") or []
    if not runs:
        return {}
    best = max(run["jobs_per_s"] for run in runs)
    most = max(runs, key=lambda run: run["nodes"])["jobs_per_s"]
    return {
        "nodes_most_vs_best": _div(most, best),
        "nodes_best_vs_ceiling": _div(best, _get(scenarios, "nodes", "ceiling_jobs_per_s")),
    }


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
    # The drain's own ceiling rounds, run beside its rounds (throughput.run_drain), if any.
    paired = (biggest or {}).get("ceiling_jobs_per_s") or ceiling
    values: dict[str, float | None] = {
        "noop_vs_ceiling": _div(biggest["jobs_per_s"] if biggest else None, paired),
        "noop_wall_vs_ceiling": _div(biggest["wall_jobs_per_s"] if biggest else None, paired),
        "million_wall_vs_ceiling": _div(
            _get(scenarios, "million", "wall_jobs_per_s"),
            _get(scenarios, "million", "ceiling_jobs_per_s") or ceiling,
        ),
        "million_wall_vs_ceiling_100k": _div(
            _get(scenarios, "million", "wall_jobs_per_s"), ceiling
        ),
        "noop_vs_ceiling_analysed": _div(analysed.get("jobs_per_s"), ceiling_analysed),
        "noop_wall_vs_ceiling_analysed": _div(analysed.get("wall_jobs_per_s"), ceiling_analysed),
        "cpu_span_vs_ideal": _get(scenarios, "cpu", "span_vs_ideal"),
        "cpu_wall_vs_ideal": _get(scenarios, "cpu", "wall_vs_ideal"),
        **io_ratios(scenarios),
        "tx_vs_plain": _get(scenarios, "transactional", "tx_vs_plain"),
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
        "pruning_vs_idle": _get(scenarios, "history", "ratio"),
        "pruning_flat_out_vs_idle": _get(scenarios, "history", "flat_out_ratio"),
        "http_32_vs_1_client": _get(scenarios, "enqueue", "http", "clients_32_vs_1"),
        "keyed_vs_unlimited": _div(
            _get(scenarios, "limits", "keyed", "jobs_per_s"),
            _get(scenarios, "limits", "plain", "jobs_per_s"),
        ),
        "keyed_wall_vs_unlimited": _div(
            _get(scenarios, "limits", "keyed", "wall_jobs_per_s"),
            _get(scenarios, "limits", "plain", "wall_jobs_per_s"),
        ),
        "idle_start_p50_ms": _get(scenarios, "latency", "idle", "start_ms", "p50"),
        "idle_start_p99_ms": _get(scenarios, "latency", "idle", "start_ms", "p99"),
        "idle_cpu_percent": _get(scenarios, "idle", "cpu_percent"),
        "idle_queries_per_s": _get(scenarios, "idle", "queries_per_s"),
        "idle_fleet_queries_per_s": _get(scenarios, "idle", "fleet", "queries_per_s"),
        **node_ratios(scenarios),
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
