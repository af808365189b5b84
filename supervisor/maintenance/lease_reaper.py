"""The lease reaper: running jobs whose holder stopped renewing go back to the queue.

A node that dies, is paused or is cut off stops renewing its leases; once one expires, the
attempt is recorded `lost` and the job is queued again at once (or dead, if that was its last
attempt). A late result from the old holder is then fenced off by (id, attempt).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined

# Why: a batch bounds one statement's locks and time; run_once loops while batches are full.
REAPER_BATCH = 1000


class Reaped(NamedTuple):
    id: int
    type: str
    queue: str
    state: str  # what became of the job: queued, dead or cancelled


@dataclass
class LeaseReaper:
    node: str  # this node's name: jobs of its own earlier runs are reaped without waiting
    holder: str  # this run's lease holder, never reaped here
    # Until when (time.monotonic()) jobs held by this node's earlier runs are looked for.
    # The look reads every held job's row, where the expired leases alone are an index range;
    # and past a lease's time from this run's start, whatever an earlier run held (a claim it
    # sent as it died may commit after this run's first look) has an expired lease anyway.
    earlier_runs_until: float = math.inf

    async def run_once(self, conn: Any, overdue: float = 0.0) -> list[Reaped]:
        """Requeue every attempt whose lease expired more than `overdue` seconds ago (and,
        until `earlier_runs_until`, any held by an earlier run of this node)."""
        total: list[Reaped] = []
        params = {
            "node": self.node,
            "holder": self.holder,
            "limit": REAPER_BATCH,
            "overdue": overdue,
            "earlier_runs": time.monotonic() < self.earlier_runs_until,
        }
        while True:
            reaped = (await run_pipelined(conn, [(sql("reap_lost_attempts"), params)]))[0]
            total.extend(Reaped(*row) for row in reaped)
            if len(reaped) < REAPER_BATCH:
                return total
