"""The pruner: keeps `jobs` from growing without end.

Succeeded and cancelled jobs older than JOBFLEET_RETENTION_SECONDS are deleted (with their
attempt rows and unique keys) by the leader. Dead jobs are kept for the dead-letter queue.

A pass walks `jobs` in id order from the start, a window of `batch` jobs per statement, and
ends at the first job created within retention (ids grow with creation time, so no job old
enough to go lies beyond it). There is no index on finished_at for this: it would cost every
completion an index insert, and the oldest jobs have the lowest ids anyway.

The leader runs the pruner on its control connection between heartbeats and lease renewals,
so `run_once` prunes one slice (`slice_seconds`) and says whether the pass has more to do:
with 10M jobs to go, the pass is spread over many slices instead of holding the connection
(and the node's lease renewals) for minutes. The cursor carries the pass on from slice to
slice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined

# Why: a window of 1,000 jobs reads, locks and deletes in a few milliseconds (measured with
# `jobfleet bench --scenario history`), so no statement holds locks or the connection long.
PRUNE_BATCH = 1000
# Why: a pass goes a slice at a time, with a pause nine times as long after each (the control
# loop keeps it): a tenth of the control connection's time while a pass lasts, spread evenly.
# It was a 0.5 s slice at each 5 s tick: the same share, but a drain that met one slice lost a
# tenth of its rate while it lasted (issue 22's 0.9 target missed at 0.865-0.896, bench
# `history`), and claims waited behind half a second of deletes.
PRUNE_SLICE_SECONDS = 0.1
PRUNE_PAUSE_SECONDS = 0.9
# Why: retention is measured in days; looking every minute keeps the work small and steady.
PRUNE_INTERVAL_SECONDS = 60.0
UNIQUE_KEYS_BATCH = 5000


@dataclass
class Pruner:
    keep_seconds: float
    batch: int = PRUNE_BATCH
    slice_seconds: float = PRUNE_SLICE_SECONDS
    after: int = 0  # the pass's cursor: the last id it has looked at
    more: bool = False  # the last slice stopped for time, not at the end of the pass
    batches: int = 0  # statements run, for the bench and the tests
    next_due: float = 0.0  # when the next slice (or the next pass) is due (monotonic)

    async def run_paced(self, conn: Any) -> int:
        """`run_once`, and when to run again: after PRUNE_PAUSE_SECONDS while the pass has
        more, else after PRUNE_INTERVAL_SECONDS (the control loop keeps that time)."""
        self.next_due = time.monotonic() + PRUNE_INTERVAL_SECONDS
        pruned = await self.run_once(conn)
        if self.more:
            self.next_due = time.monotonic() + PRUNE_PAUSE_SECONDS
        return pruned

    async def run_once(self, conn: Any) -> int:
        """Prune for up to `slice_seconds` (at least one window); return how many jobs went.
        `more` says whether the pass has more to look at (call again soon)."""
        if not self.more:  # a new pass: unique keys first (a few), then the jobs from the start
            await self._prune_unique_keys(conn)
            self.after = 0
        deadline = time.monotonic() + self.slice_seconds
        total = 0
        while True:
            params = {"keep": self.keep_seconds, "limit": self.batch, "after": self.after}
            [[(pruned, last, reached_young)]] = await run_pipelined(
                conn, [(sql("prune_finished"), params)]
            )
            self.batches += 1
            total += int(pruned)
            if last is None or reached_young:
                self.more = False
                return total
            self.after = last
            if time.monotonic() >= deadline:
                self.more = True
                return total

    async def _prune_unique_keys(self, conn: Any) -> None:
        while True:
            cur = await conn.execute(sql("prune_unique_keys"), {"limit": UNIQUE_KEYS_BATCH})
            if len(await cur.fetchall()) < UNIQUE_KEYS_BATCH:
                return
