"""Queue gauges: the leader counts jobs per queue and state, the age of each queue's oldest
ready job, every node's heartbeat age and which queues are paused, for /metrics. Not at every
beat: counting a big backlog costs the database as much as a few thousand jobs
(JOBFLEET_QUEUE_STATS_SECONDS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined

GAUGED_STATES = ("queued", "running", "dead")
# Why: the first count comes a little after start, not in a start-up rush.
GAUGES_FIRST_AFTER_SECONDS = 2.0


@dataclass
class QueueGauges:
    queues_seen: set[str] = field(default_factory=set)

    async def run_once(self, conn: Any) -> dict[str, Any]:
        """The figures for the gauge snapshot (see jobfleet.metrics.SnapshotCollector)."""
        gauged, ages, paused = await run_pipelined(
            conn,
            [
                (sql("queue_gauges"), {}),
                (sql("node_heartbeat_ages"), {}),
                (sql("queues_paused_gauge"), {}),
            ],
        )
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        for queue, state, count, age in gauged:
            counts[(queue, state)] = count
            if state == "queued":
                oldest[queue] = age
            self.queues_seen.add(queue)
        # A queue that empties reads 0, rather than vanishing from the gauges.
        depth = [
            (queue, state, counts.get((queue, state), 0))
            for queue in sorted(self.queues_seen)
            for state in GAUGED_STATES
        ]
        oldest = {queue: oldest.get(queue, 0.0) for queue in self.queues_seen}
        return {
            "queue_depth": depth,
            "oldest_ready_age": sorted(oldest.items()),
            "heartbeat_age": [tuple(r) for r in ages],
            "queue_paused": [tuple(r) for r in paused],
        }
