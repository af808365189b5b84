"""Scenario `limits`: what limits per type cost when they never bind (issue 19's target: at
least 0.8 of the same drain without them, in the same run).

The same no-op burst drain as `drain`, in rounds that alternate between the type without
limits and the type with `max_running` and `rate` set far above what the node can reach (so
every claim takes the limited path: the row lock, the allowance, the counters, and every
outcome batch counts its jobs out), each round on a fresh never-analysed fill of its own.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobfleet import type_limits
from jobfleet.bench import scratch
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.bench.throughput import burst, measured

# Far beyond what a node reaches: the limits are checked and kept, never reached.
NEVER_RUNNING = 1_000_000
NEVER_RATE = "1000000000/s"


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.sizes.limits_jobs
    plain: list[dict[str, Any]] = []
    limited: list[dict[str, Any]] = []
    for n in range(1, ctx.sizes.rounds + 1):
        for rounds, limits in ((plain, False), (limited, True)):
            with scratch.scratch_database(ctx.server, "limits") as url:
                scratch.fill(url, count)
                if limits:
                    with psycopg.connect(url) as conn:
                        type_limits.set_limits(
                            conn, "noop", max_running=str(NEVER_RUNNING), rate=NEVER_RATE
                        )
                what = "with limits that never bind" if limits else "without limits"
                ctx.step(f"limits: {count:,} noop jobs {what} (round {n})")
                result = measured(url, count, burst(ctx, url))
                if limits:  # every job claimed under the limits, and counted out again
                    result["claimed_limited"], result["counter_after"] = scratch.scalar_row(
                        url,
                        "SELECT l.claimed, l.claimed - f.finished FROM type_limits l"
                        " JOIN type_finished f USING (type) WHERE type = 'noop'",
                    )
                rounds.append(result)
    return {
        "jobs": count,
        "workers": ctx.workers,
        "max_running": NEVER_RUNNING,
        "rate": NEVER_RATE,
        "plain": _median(plain),
        "limited": _median(limited),
    }


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    steady = median_round(rounds, "jobs_per_s")
    wall = median_round(rounds, "wall_jobs_per_s")
    return {
        "jobs_per_s": steady["jobs_per_s"],
        "wall_jobs_per_s": wall["wall_jobs_per_s"],
        "rounds": rounds,
    }


def lines(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's lines (report.py): each drain, steady and start to exit."""
    what = f"{r['jobs']:,} noop, {r['workers']} workers, median of {len(r['plain']['rounds'])}"
    return [
        (f"{what}: without limits", _figures(r["plain"])),
        (f"{what}: max_running and rate never reached", _figures(r["limited"])),
    ]


def _figures(run: dict[str, Any]) -> str:
    return f"{run['jobs_per_s']:,.0f} jobs/s steady, {run['wall_jobs_per_s']:,.0f} start-to-exit"
