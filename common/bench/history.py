"""Scenario `history`: what pruning a big history costs the hot path (issue 22's target: the
no-op drain at least 0.9 of the same drain with the pruner idle, in the same run).

One scratch database holds N finished jobs (default 10M, succeeded a month ago, one in ten
after a failed attempt recorded in job_attempt_log), filled server-side with generate_series
and vacuumed, as an old history would have been by autovacuum. Then the same no-op burst
drain runs on it in alternating rounds, each on a fresh fill of its own queued jobs: with
nothing pruning (JOBFLEET_RETENTION_SECONDS=0); with the retention at a day, so the node's own
leader prunes the history as it would in production (a slice of 0.5 s per control tick, on
its control connection); and, the worst case, with the node pruning nothing while the same
pruner (supervisor/maintenance/pruner.py) runs flat out beside it on a connection of its own,
one window after another with no pause.

Reported: the three drains (the median round of each), the leader's and the flat-out ratio to
the idle drain, and the flat-out pruner's rate and its longest statement. Each window is one
autocommit statement, so no row lock it takes outlives it: the longest statement is the
longest any lock was held.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg

from jobfleet.bench import scratch
from jobfleet.bench.ceiling import median_round
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import wait_until
from jobfleet.bench.throughput import burst, measured
from jobfleet.supervisor.maintenance.pruner import PRUNE_BATCH, Pruner

# The history is a month old; the pruner keeps a day: every finished job of it qualifies, the
# drains' jobs (finished now) do not.
KEEP_SECONDS = 86_400.0
# Rows per INSERT of the fill: a transaction of this size, progress between them.
FILL_CHUNK = 1_000_000
FILL_HISTORY = """
INSERT INTO jobs (type, queue, state, attempt, max_attempts, run_at, created_at, started_at,
                  finished_at, attempt_node, attempt_pid, payload)
SELECT 'noop', 'default', 'succeeded', CASE WHEN g %% 10 = 0 THEN 2 ELSE 1 END, 5, t, t, t, t,
       'old', 1, 'null'
FROM (SELECT now() - interval '30 days' AS t) AS c, generate_series(1, %(count)s) AS g
"""
# A failed first attempt for the jobs that succeeded on their second.
FILL_ATTEMPTS = """
INSERT INTO job_attempt_log (job_id, attempt, outcome, error, started_at, finished_at)
SELECT id, 1, 'failed', 'boom', started_at, finished_at FROM jobs WHERE attempt = 2
"""
HISTORY_LEFT = "SELECT count(*) FROM jobs WHERE created_at < now() - interval '1 day'"
NO_PRUNING = {"JOBFLEET_RETENTION_SECONDS": "0"}
# The node's own leader prunes as it would in production: a slice, a pause, a slice.
LEADER_PRUNES = {"JOBFLEET_RETENTION_SECONDS": str(int(KEEP_SECONDS))}
# The pruner must be under way before the drain starts, and a drain must not wait for ever.
PRUNER_START_TIMEOUT = 60.0


def run(ctx: Context) -> dict[str, Any]:
    history, drain = ctx.sizes.history_jobs, ctx.sizes.history_drain
    rounds: dict[str, list[dict[str, Any]]] = {"idle": [], "leader": [], "flat_out": []}
    beside: list[dict[str, Any]] = []
    with scratch.scratch_database(ctx.server, "history") as url:
        fill_history(ctx, url, history)
        # Alternating rounds: the machine's other load drifts, and each round prunes only a
        # few percent of the history, so every round drains over about as much.
        for n in range(1, ctx.sizes.rounds + 1):
            what = f"history: {drain:,} noop over {history:,} finished"
            ctx.step(f"{what}, nothing pruning ({n})")
            rounds["idle"].append(_drain(ctx, url, drain, NO_PRUNING))
            ctx.step(f"{what}, the node's leader pruning them ({n})")
            before = scratch.scalar(url, HISTORY_LEFT)
            rounds["leader"].append(_drain(ctx, url, drain, LEADER_PRUNES))
            rounds["leader"][-1]["pruned"] = before - scratch.scalar(url, HISTORY_LEFT)
            ctx.step(f"{what}, a pruner deleting them flat out ({n})")
            with PrunerThread(url) as pruner:
                wait_until(lambda: pruner.windows > 0, PRUNER_START_TIMEOUT, "the pruner")
                pruner.mark()
                rounds["flat_out"].append(_drain(ctx, url, drain, NO_PRUNING))
                beside.append(pruner.since_mark())
        left = scratch.scalar(url, HISTORY_LEFT)
    steady = {k: median_round(v, "jobs_per_s")["jobs_per_s"] for k, v in rounds.items()}
    seconds = sum(b["seconds"] for b in beside)
    return {
        "history_jobs": history,
        "jobs": drain,
        "workers": ctx.workers,
        **{k: {"jobs_per_s": steady[k], "rounds": v} for k, v in rounds.items()},
        "ratio": _ratio(steady["leader"], steady["idle"]),
        "flat_out_ratio": _ratio(steady["flat_out"], steady["idle"]),
        "pruner": {
            "pruned": sum(b["pruned"] for b in beside),
            "seconds": seconds,
            "jobs_per_s": sum(b["pruned"] for b in beside) / seconds if seconds else 0.0,
            "longest_statement_ms": max(b["longest_statement_ms"] for b in beside),
            "still_pruning": all(b["still_pruning"] for b in beside),
            "window": PRUNE_BATCH,
            "history_left": int(left),
            "rounds": beside,
        },
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def fill_history(ctx: Context, url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        done = 0
        while done < count:
            chunk = min(FILL_CHUNK, count - done)
            ctx.step(f"history: fill {done + chunk:,} of {count:,} finished jobs")
            conn.execute(FILL_HISTORY, {"count": chunk})
            done += chunk
        conn.execute(FILL_ATTEMPTS)
        ctx.step(f"history: vacuum {count:,} finished jobs")
        conn.execute("VACUUM (ANALYZE) jobs, job_attempt_log")


def _drain(ctx: Context, url: str, count: int, env: dict[str, str]) -> dict[str, Any]:
    first = int(scratch.scalar(url, "SELECT coalesce(max(id), 0) + 1 FROM jobs"))
    scratch.fill(url, count)
    return measured(url, count, burst(ctx, url, env=env), first)


class PrunerThread(threading.Thread):
    """The leader's pruner, one window per call and no pause between them, on a connection of
    its own, until stopped or the history is gone; times every window."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-pruner", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.windows = 0
        self.pruned = 0
        self.durations: list[float] = []
        self.error: BaseException | None = None
        self._mark = (0, 0, 0.0)

    def __enter__(self) -> PrunerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=120)
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            asyncio.run(self._prune())
        except BaseException as exc:  # reported by __exit__, in the scenario's thread
            self.error = exc

    async def _prune(self) -> None:
        pruner = Pruner(keep_seconds=KEEP_SECONDS, slice_seconds=0.0)
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while not self.stopping.is_set():
                started = time.perf_counter()
                pruned = await pruner.run_once(conn)
                self.durations.append(time.perf_counter() - started)
                self.pruned += pruned
                self.windows += 1
                if not pruner.more and pruned == 0:  # a whole pass found nothing: all gone
                    return

    def mark(self) -> None:
        self._mark = (self.windows, self.pruned, time.perf_counter())

    def since_mark(self) -> dict[str, Any]:
        """What the pruner did since `mark`: jobs deleted, their rate, its longest window."""
        windows, pruned, at = self._mark
        seconds = time.perf_counter() - at
        durations = self.durations[windows : self.windows]
        return {
            "pruned": self.pruned - pruned,
            "seconds": seconds,
            "jobs_per_s": (self.pruned - pruned) / seconds if seconds > 0 else 0.0,
            "windows": len(durations),
            "longest_statement_ms": 1000 * max(durations, default=0.0),
            "still_pruning": self.is_alive(),
        }


def lines(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's lines (report.py)."""
    p = r["pruner"]
    what = (
        f"{r['jobs']:,} noop, {r['workers']} workers, over {r['history_jobs']:,} finished, "
        f"median of {len(r['idle']['rounds'])}"
    )
    pruned = sum(x["pruned"] for x in r["leader"]["rounds"])
    return [
        (f"{what}: nothing pruning", f"{r['idle']['jobs_per_s']:,.0f} jobs/s steady"),
        (
            f"{what}: the leader pruning",
            f"{r['leader']['jobs_per_s']:,.0f} jobs/s steady ({pruned:,} pruned in all)",
        ),
        (f"{what}: a pruner flat out", f"{r['flat_out']['jobs_per_s']:,.0f} jobs/s steady"),
        (
            f"pruner flat out beside the drain (windows of {p['window']:,})",
            f"{p['jobs_per_s']:,.0f} jobs/s deleted, longest statement "
            f"{p['longest_statement_ms']:,.0f} ms"
            + ("" if p["still_pruning"] else " (history gone before the drain ended)"),
        ),
    ]
