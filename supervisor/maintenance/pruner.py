"""The pruner: keeps `jobs` from growing without end.

Succeeded and cancelled jobs older than JOBFLEET_RETENTION_SECONDS are deleted (with their
attempt rows) in batches by the leader. Dead jobs are kept for the dead-letter queue. There is
no index on finished_at for this: it would cost every completion an index insert; old jobs
have the lowest ids, so the scan in id order finds them first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined

# Why: one batch bounds the locks and WAL of one statement; run_once loops while batches fill.
PRUNE_BATCH = 5000
# Why: retention is measured in days; looking every minute keeps the work small and steady.
PRUNE_INTERVAL_SECONDS = 60.0


@dataclass
class Pruner:
    keep_seconds: float

    async def run_once(self, conn: Any) -> int:
        """Delete every finished job past retention, and unique jobs' keys past their
        window; return how many jobs went."""
        while True:
            cur = await conn.execute(sql("prune_unique_keys"), {"limit": PRUNE_BATCH})
            if len(await cur.fetchall()) < PRUNE_BATCH:
                break
        total = 0
        while True:
            params = {"keep": self.keep_seconds, "limit": PRUNE_BATCH}
            pruned = len((await run_pipelined(conn, [(sql("prune_finished"), params)]))[0])
            total += pruned
            if pruned < PRUNE_BATCH:
                return total
