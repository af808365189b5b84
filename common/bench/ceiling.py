"""Scenario 1, the raw ceiling: the fleet's own claim and fenced complete_batch statements run
back to back in batches from plain processes, with no supervisor, workers or pipes. What the
database alone allows; the fleet's drain is reported as a fraction of it."""

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
    count = ctx.sizes.ceiling_jobs
    rounds = []
    with scratch.scratch_database(ctx.server, "ceiling") as url:
        for n in range(1, ctx.sizes.rounds + 1):
            scratch.reset(url)
            ctx.step(f"ceiling: queue {count:,} jobs (round {n} of {ctx.sizes.rounds})")
            scratch.fill(url, count)
            ctx.step(f"ceiling: {DRAINERS} drainers, batch {BATCH} (round {n})")
            spans = drain(url, DRAINERS)
            done = scratch.scalar(url, "SELECT count(*) FROM jobs WHERE state = 'succeeded'")
            drained = sum(jobs for jobs, _, _ in spans)
            seconds = max(end for _, _, end in spans) - min(start for _, start, _ in spans)
            rounds.append(
                {
                    "drained": drained,
                    "succeeded": done,
                    "drain_seconds": seconds,
                    "jobs_per_s": drained / seconds,
                }
            )
    middle = median_round(rounds, "jobs_per_s")
    return {
        "jobs": count,
        "drainers": DRAINERS,
        "batch": BATCH,
        **middle,
        "rounds": rounds,
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
            rows = run_pipelined_blocking(conn, [claim])[0]
            if not rows:
                break
            now = time.time_ns() // 1000  # a Success's times are whole microseconds
            successes = [(row[0], row[4], "null", None, now, now) for row in rows]
            run_pipelined_blocking(conn, [success_statement(holder, successes)])
            done += len(rows)
        results.put((done, started, time.time()))
