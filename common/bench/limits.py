"""Scenario `limits`: what limits per type cost when they never bind (issue 19's targets: at
least 0.8 of the same drain without them, and 0.6 with a limit key over 1,000 keys, in the
same run).

The same no-op burst drain as `drain`, in rounds that go through the type without limits, the
type with `max_running` and `rate` set far above what the node can reach (so every claim takes
the limited path: the row lock, the allowance, the counters, and every outcome batch counts
its jobs out), and the type with those limits per key of `limit_key` over KEYS customers (the
claim walks the keys in turns, counts each key it takes, and every outcome batch counts its
jobs out per key), each round on a fresh never-analysed fill of its own. The keyed fill is
enqueue_many's, as a user's would be (COPY, then the keys).
"""

from __future__ import annotations

from typing import Any

import psycopg

import jobfleet
from jobfleet import type_limits
from jobfleet.bench import scratch
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.bench.throughput import burst, measured

# Far beyond what a node reaches: the limits are checked and kept, never reached.
NEVER_RUNNING = 1_000_000
NEVER_RATE = "1000000000/s"
# Customers the keyed drain's jobs are spread over, round robin.
KEYS = 1000
FILL_CHUNK = 10_000


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.sizes.limits_jobs
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "limited": [], "keyed": []}
    for n in range(1, ctx.sizes.rounds + 1):
        for name, rounds in runs.items():
            with scratch.scratch_database(ctx.server, "limits") as url:
                _fill(url, name, count)
                ctx.step(f"limits: {count:,} noop jobs {WHAT[name]} (round {n})")
                result = measured(url, count, burst(ctx, url))
                if name == "limited":  # every job claimed under the limits, counted out again
                    result["claimed_limited"], result["counter_after"] = scratch.scalar_row(
                        url,
                        "SELECT l.claimed, l.claimed - f.finished FROM type_limits l"
                        " JOIN type_finished f USING (type) WHERE type = 'noop'",
                    )
                if name == "keyed":  # every job counted for its key, and out again
                    result["claimed_limited"], result["counter_after"], result["keys"] = (
                        scratch.scalar_row(
                            url,
                            "SELECT coalesce(sum(k.claimed), 0)::bigint,"
                            " coalesce(sum(k.claimed - f.finished), 0)::bigint, count(*)"
                            " FROM key_limits k JOIN key_finished f USING (type, key)"
                            " WHERE type = 'noop'",
                        )
                    )
                rounds.append(result)
    return {
        "jobs": count,
        "workers": ctx.workers,
        "max_running": NEVER_RUNNING,
        "rate": NEVER_RATE,
        "keys": KEYS,
        **{name: _median(rounds) for name, rounds in runs.items()},
    }


WHAT = {
    "plain": "without limits",
    "limited": "with limits that never bind",
    "keyed": f"with limits per key that never bind, {KEYS:,} keys",
}


def _fill(url: str, name: str, count: int) -> None:
    if name == "plain":
        scratch.fill(url, count)
        return
    with psycopg.connect(url) as conn:
        type_limits.set_limits(
            conn,
            "noop",
            max_running=str(NEVER_RUNNING),
            rate=NEVER_RATE,
            limit_key="customer" if name == "keyed" else None,
        )
    if name == "limited":
        scratch.fill(url, count)
        return
    with psycopg.connect(url) as conn:
        for start in range(0, count, FILL_CHUNK):
            payloads = [
                {"customer": i % KEYS} for i in range(start, min(count, start + FILL_CHUNK))
            ]
            jobfleet.enqueue_many(conn, "noop", payloads)


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
        (
            f"{what}: the same per key, {r['keys']:,} keys in turns",
            _figures(r["keyed"]),
        ),
    ]


def _figures(run: dict[str, Any]) -> str:
    return f"{run['jobs_per_s']:,.0f} jobs/s steady, {run['wall_jobs_per_s']:,.0f} start-to-exit"
