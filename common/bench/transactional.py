"""Scenario `transactional`: what a transactional handler's path costs per job, beside the
plain path, in the same run on the same workers (issue 20).

Each round fills a fresh scratch database with N no-op jobs of a plain type and N of a
transactional one (`worker/bench_handlers.py`: both do nothing; the transactional one's worker
opens a transaction, runs the fenced completion in it and commits, per job, where the plain
one's supervisor completes finished jobs in batches), and one node drains both with
`--burst`. Jobs are picked up by id, so the two types run one after the other; which goes
first alternates between rounds, so neither always pays the start. Each type's steady rate is
its own first start to last finish.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobfleet.bench import scratch, throughput
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.worker import bench_handlers

HANDLERS = ("--handlers", bench_handlers.__name__)
PATHS = {"plain": bench_handlers.PLAIN_NOOP_TYPE, "transactional": bench_handlers.TX_NOOP_TYPE}
SPAN_BY_TYPE = """
SELECT type, count(*), extract(epoch FROM max(finished_at) - min(started_at))
FROM jobs WHERE state = 'succeeded' GROUP BY type
"""


def run(ctx: Context) -> dict[str, Any]:
    count = ctx.sizes.transactional_jobs
    rounds = [one_round(ctx, count, n) for n in range(1, ctx.sizes.rounds + 1)]
    middle = median_round(rounds, "tx_vs_plain")
    return {"jobs": count, "workers": ctx.workers, **middle, "rounds": rounds}


def one_round(ctx: Context, count: int, n: int) -> dict[str, Any]:
    order = list(PATHS) if n % 2 else list(reversed(PATHS))
    with scratch.scratch_database(ctx.server, "transactional") as url:
        ctx.step(f"transactional: queue {count:,} plain and {count:,} transactional no-ops")
        for path in order:
            scratch.fill(url, count, type=PATHS[path])
        ctx.step(f"transactional: drain both, {ctx.workers} workers (round {n}, {order[0]} first)")
        wall = throughput.burst(ctx, url, extra_args=HANDLERS)
        with psycopg.connect(url, autocommit=True) as conn:
            spans = {t: (int(c), float(s or 0.0)) for t, c, s in conn.execute(SPAN_BY_TYPE)}
    result: dict[str, Any] = {"first": order[0], "wall_seconds": wall}
    for path, type in PATHS.items():
        succeeded, seconds = spans.get(type, (0, 0.0))
        rate = succeeded / seconds if seconds > 0 else 0.0
        result[path] = {"succeeded": succeeded, "span_seconds": seconds, "jobs_per_s": rate}
    plain, tx = result["plain"]["jobs_per_s"], result["transactional"]["jobs_per_s"]
    result["tx_vs_plain"] = tx / plain if plain > 0 else 0.0
    # Worker time each job costs on top of the plain path: the fleet's extra seconds per job
    # times the workers that shared them.
    result["extra_worker_ms_per_job"] = (
        ctx.workers * 1000 * (1 / tx - 1 / plain) if tx > 0 and plain > 0 else 0.0
    )
    return result
