"""The lease reaper: running jobs whose holder stopped renewing go back to the queue.

A node that dies, is paused or is cut off stops renewing its leases; once one expires, the
attempt is recorded `lost` and the job is queued again at once (or dead, if that was its last
attempt). A late result from the old holder is then fenced off by (id, attempt).
"""

from __future__ import annotations

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
    # Jobs of this node's earlier runs are looked for until one pass has been through: after
    # it none can appear (the name is refused to another run while this one beats), and the
    # look reads every held job's row where the expired leases alone are an index range.
    earlier_runs_reaped: bool = False

    async def run_once(self, conn: Any, overdue: float = 0.0) -> list[Reaped]:
        """Requeue every attempt whose lease expired more than `overdue` seconds ago (and, in
        the first pass, any held by an earlier run of this node)."""
        total: list[Reaped] = []
        params = {
            "node": self.node,
            "holder": self.holder,
            "limit": REAPER_BATCH,
            "overdue": overdue,
            "earlier_runs": not self.earlier_runs_reaped,
        }
        while True:
            reaped = (await run_pipelined(conn, [(sql("reap_lost_attempts"), params)]))[0]
            total.extend(Reaped(*row) for row in reaped)
            if len(reaped) < REAPER_BATCH:
                self.earlier_runs_reaped = True
                return total
