"""Scenario 1, the raw ceiling: the fleet's own claim and fenced complete_batch statements run
back to back in batches from plain processes, with no supervisor, workers or pipes. What the
database alone allows; the fleet's drain is reported as a fraction of it.

Measured as the drains are: each round on a fresh scratch database filled by COPY and drained
at once, never analysed (what a user who bulk-enqueues meets); the same rounds on an analysed
fill are reported beside it."""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

import psycopg

from jobfleet.bench import scratch
from jobfleet.bench.context import Context
from jobfleet.supervisor.store import claim_statement, run_pipelined_blocking, success_statement

DRAINERS = 2
BATCH = 500


def run(ctx: Context) -> dict[str, Any]:
    count, total = ctx.sizes.ceiling_jobs, ctx.sizes.rounds
    rounds = [one_round(ctx, count, n, analyse=False) for n in range(1, total + 1)]
    analysed = [one_round(ctx, count, n, analyse=True) for n in range(1, total + 1)]
    return {
        "jobs": count,
        "drainers": DRAINERS,
        "batch": BATCH,
        "fill": "fresh",
        **median_round(rounds, "jobs_per_s"),
        "rounds": rounds,
        "analysed": {**median_round(analysed, "jobs_per_s"), "rounds": analysed},
    }


def one_round(
    ctx: Context, count: int, n: int, *, analyse: bool, of: int | None = None
) -> dict[str, Any]:
    """Round `n` (of `of`, the bench's rounds by default) of the raw ceiling over `count`
    jobs."""
    fill = "analysed" if analyse else "fresh"
    with scratch.scratch_database(ctx.server, "ceiling") as url:
        ctx.step(f"ceiling: queue {count:,} jobs, {fill} (round {n} of {of or ctx.sizes.rounds})")
        scratch.fill(url, count, analyse=analyse)
        ctx.step(f"ceiling: {DRAINERS} drainers, batch {BATCH}, {fill} (round {n})")
        spans = drain(url, DRAINERS)
        done = scratch.scalar(url, "SELECT count(*) FROM jobs WHERE state = 'succeeded'")
    drained = sum(jobs for jobs, _, _ in spans)
    seconds = max(end for _, _, end in spans) - min(start for _, start, _ in spans)
    return {
        "drained": drained,
        "succeeded": done,
        "drain_seconds": seconds,
        "jobs_per_s": drained / seconds,
    }


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose `key` is the median (the lower middle one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def drain(url: str, processes: int) -> list[tuple[int, float, float]]:
    """(jobs drained, start, end) per process; they start together on a barrier."""
    mp = multiprocessing.get_context("fork")
    barrier = mp.Barrier(processes)
    results = mp.Queue()
    procs = [
        mp.Process(target=_drainer, args=(url, f"ceiling-{i}", barrier, results))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    spans: list[tuple[int, float, float]] = []
    while len(spans) < len(procs):
        try:
            spans.append(results.get(timeout=1))
        except queue.Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed:  # a drainer died (its error is on stderr): do not wait for it
                raise RuntimeError(f"a ceiling drainer failed (exit code {failed[0]})") from None
    for p in procs:
        p.join()
    return spans


def _drainer(url: str, holder: str, barrier: Any, results: Any) -> None:
    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        barrier.wait()
        started = time.time()
        while True:
            # As the supervisor runs them (see supervisor/store.py, run_pipelined).
            claim = claim_statement(
                holder=holder, types=["noop"], queues=None, limit=BATCH, lease_seconds=30
            )
            # On its own, prepared, as the lanes send a lone plain claim (store.run_claims).
            rows = conn.execute(*claim, prepare=True).fetchall()
            if not rows:
                break
            now = time.time_ns() // 1000  # a Success's times are whole microseconds
            successes = [(row[0], row[4], "null", None, now, now) for row in rows]
            run_pipelined_blocking(conn, [success_statement(holder, successes, holder=holder)])
            done += len(rows)
        results.put((done, started, time.time()))
