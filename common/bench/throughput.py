"""Scenarios that drain a queue with real supervisors: no-op drain (2), CPU-bound work (3),
and backlog scale (6); scaling out over nodes and workers (7) is scaling.py.

Two clocks per run: `wall` runs from starting the supervisors to their exit (what a user
waits, process start included); `span` runs from the first job's start to the last job's end
as the workers recorded them (the steady rate, comparable with the raw ceiling).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from jobfleet.bench import ceiling, scratch
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchNode, started_nodes, wait_until

# A burst drain that has not ended by then is stuck, not slow.
DRAIN_TIMEOUT = 300.0

LAST_DONE = "SELECT state = 'succeeded' FROM jobs WHERE id = %(last)s"
TOP_DONE = "SELECT count(*) = %(last)s FROM jobs WHERE id <= %(last)s AND state = 'succeeded'"
SPAN = """
SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))
FROM jobs WHERE state = 'succeeded' AND id BETWEEN %(first)s AND %(last)s
"""


def burst(
    ctx: Context,
    url: str,
    *,
    nodes: int = 1,
    workers: int | None = None,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> float:
    """Run `nodes` supervisors with --burst (and `extra_args`, `env`) until all exit; the
    seconds from the first start."""
    with started_nodes() as started:
        for i in range(nodes):
            started.append(
                BenchNode(
                    url,
                    f"bench-{i + 1}",
                    workers=workers or ctx.workers,
                    burst=True,
                    extra_args=extra_args,
                    env=env,
                    log_dir=ctx.log_dir,
                )
            )
        first = started[0].started
        for node in started:
            node.wait(DRAIN_TIMEOUT)
        return time.perf_counter() - first


def span(url: str, last: int, first: int = 1) -> tuple[int, float]:
    """(succeeded jobs, seconds from the first start to the last finish) among the ids from
    `first` to `last`."""
    row = scratch.scalar_row(url, SPAN, {"first": first, "last": last})
    return int(row[0]), float(row[1] or 0.0)


def measured(url: str, jobs: int, wall: float, first: int = 1) -> dict[str, Any]:
    """The drain of the `jobs` jobs from id `first` on, which took `wall` seconds."""
    succeeded, seconds = span(url, first + jobs - 1, first)
    return {
        "jobs": jobs,
        "succeeded": succeeded,
        "wall_seconds": wall,
        "wall_jobs_per_s": jobs / wall,
        "span_seconds": seconds,
        "jobs_per_s": succeeded / seconds if seconds > 0 else 0.0,
    }


def run_drain(ctx: Context) -> dict[str, Any]:
    """Each size `rounds` times, each round on a fresh scratch database filled by COPY and
    drained at once, never analysed (what a user who bulk-enqueues meets); per size, the
    median round of each clock (steady and start to exit), and every round. The biggest size
    is also run on analysed fills, reported beside it.

    Each round of the biggest size on fresh fills follows a round of the raw ceiling of its
    own (ceiling.one_round, the same count), and the drain's ratios to the ceiling are to
    those rounds' median: as the `nodes` scenario does, so that a load that comes and goes on
    a shared machine falls on both. Here the same ceiling measured a minute apart ranged over
    a third (57k-85k jobs/s)."""
    runs = []
    for count in ctx.sizes.drain_jobs:
        paired = count == ctx.sizes.drain_jobs[-1]
        runs.append(drain_rounds(ctx, count, analyse=False, paired=paired))
    if runs:
        runs[-1]["analysed"] = drain_rounds(ctx, ctx.sizes.drain_jobs[-1], analyse=True)
    return {"workers": ctx.workers, "fill": "fresh", "runs": runs}


def drain_rounds(
    ctx: Context, count: int, *, analyse: bool, paired: bool = False
) -> dict[str, Any]:
    """The rounds of one size; `paired`: each after a ceiling round of its own (and
    Sizes.paired_rounds of them)."""
    fill = "analysed" if analyse else "fresh"
    rounds = []
    ceilings = []
    total = ctx.sizes.paired_rounds if paired else ctx.sizes.rounds
    for n in range(1, total + 1):
        if paired:
            ceilings.append(ceiling.one_round(ctx, count, n, analyse=analyse, of=total))
        with scratch.scratch_database(ctx.server, "drain") as url:
            ctx.step(f"drain: queue {count:,} noop jobs, {fill} (round {n} of {total})")
            scratch.fill(url, count, analyse=analyse)
            ctx.step(f"drain: {count:,} noop jobs, {ctx.workers} workers, {fill} (round {n})")
            rounds.append(measured(url, count, burst(ctx, url)))
    steady = median_round(rounds, "jobs_per_s")
    wall = median_round(rounds, "wall_jobs_per_s")
    result = {
        "jobs": count,
        "succeeded": min(r["succeeded"] for r in rounds),
        "span_seconds": steady["span_seconds"],
        "jobs_per_s": steady["jobs_per_s"],
        "wall_seconds": wall["wall_seconds"],
        "wall_jobs_per_s": wall["wall_jobs_per_s"],
        "rounds": rounds,
    }
    if ceilings:
        result["ceiling_jobs_per_s"] = median_round(ceilings, "jobs_per_s")["jobs_per_s"]
        result["ceiling_rounds"] = [c["jobs_per_s"] for c in ceilings]
    return result


def run_million(ctx: Context) -> dict[str, Any]:
    """A million-job bulk enqueue drained at once by one node: COPY, then `supervisor
    --burst` on the never-analysed table, once (a round is half a minute here), after a
    round of the raw ceiling on a fill of its own of the same million: the ratio to the
    ceiling is to that round, measured the same way a minute before, as the drain's are to
    theirs (the `ceiling` scenario drains 100k, minutes apart)."""
    count = ctx.sizes.million_jobs
    own = ceiling.one_round(ctx, count, 1, analyse=False, of=1)
    with scratch.scratch_database(ctx.server, "million") as url:
        ctx.step(f"million: queue {count:,} noop jobs, fresh")
        scratch.fill(url, count)
        ctx.step(f"million: {count:,} noop jobs, {ctx.workers} workers")
        result = measured(url, count, burst(ctx, url))
    return {
        "workers": ctx.workers,
        "fill": "fresh",
        **result,
        "ceiling_jobs_per_s": own["jobs_per_s"],
    }


def run_cpu(ctx: Context) -> dict[str, Any]:
    jobs, ms = ctx.sizes.cpu_jobs, ctx.sizes.cpu_ms
    with scratch.scratch_database(ctx.server, "cpu") as url:
        scratch.fill(url, jobs, type="cpu", payload=f'{{"ms": {ms}}}')
        ctx.step(f"cpu: {jobs} x {ms} ms, {ctx.workers} workers")
        result = measured(url, jobs, burst(ctx, url))
    ideal = jobs * ms / 1000 / ctx.workers
    return {
        **result,
        "ms_per_job": ms,
        "workers": ctx.workers,
        "ideal_seconds": ideal,
        "span_vs_ideal": result["span_seconds"] / ideal,
        "wall_vs_ideal": result["wall_seconds"] / ideal,
    }


def run_backlog(ctx: Context) -> dict[str, Any]:
    """Drain the same count off the top of a small and a huge backlog. The jobs under the
    drained ones stay queued throughout, so the claim works against the full backlog."""
    drain = ctx.sizes.backlog_drain
    runs = []
    for backlog in ctx.sizes.backlogs:
        with scratch.scratch_database(ctx.server, "backlog") as url:
            ctx.step(f"backlog: queue {backlog + drain:,} jobs")
            scratch.fill(url, backlog + drain)
            ctx.step(f"backlog: drain {drain:,} over {backlog:,} queued")
            with started_nodes() as started:
                node = BenchNode(url, "bench-1", workers=ctx.workers, log_dir=ctx.log_dir)
                started.append(node)
                wait_for_top(url, drain, f"{drain} jobs over a backlog of {backlog}")
                node.stop()
            succeeded, seconds = span(url, drain)
            runs.append(
                {
                    "backlog": backlog,
                    "drained": succeeded,
                    "span_seconds": seconds,
                    "jobs_per_s": succeeded / seconds if seconds > 0 else 0.0,
                }
            )
    return {"drain": drain, "workers": ctx.workers, "runs": runs}


def wait_for_top(url: str, last: int, what: str) -> None:
    """Wait until jobs 1..last succeeded: watch the last one (a primary-key lookup, so the
    watching costs the database nearly nothing), then make sure of the rest."""
    with psycopg.connect(url, autocommit=True) as conn:

        def done(query: str) -> bool:
            row = conn.execute(query, {"last": last}).fetchone()
            return bool(row and row[0])

        wait_until(lambda: done(LAST_DONE), DRAIN_TIMEOUT, what, pause=0.02)
        wait_until(lambda: done(TOP_DONE), DRAIN_TIMEOUT, what, pause=0.02)
