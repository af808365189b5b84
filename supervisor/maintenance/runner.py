"""Runs the node's periodic duties: heartbeat and lease renewal (every node), leadership and
the leader's services (the lease reaper), and LISTEN for new work."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection
from jobfleet.supervisor.maintenance.lease_reaper import LeaseReaper
from jobfleet.supervisor.maintenance.pruner import PRUNE_INTERVAL_SECONDS, Pruner

if TYPE_CHECKING:
    from jobfleet.supervisor.fleet import Supervisor

log = get_logger("jobfleet.supervisor")

SUMMARY_EVERY_SECONDS = 10.0
LISTEN_CHANNEL = "jobfleet_jobs"
CANCEL_CHANNEL = "jobfleet_cancel"
GAUGED_STATES = ("queued", "running", "dead")
# The leader's queue-depth count starts a little after start (not in a start-up rush), then
# runs every JOBFLEET_QUEUE_STATS_SECONDS.
GAUGES_FIRST_AFTER_SECONDS = 2.0


class Maintenance:
    def __init__(self, supervisor: Supervisor, url: str) -> None:
        self.sup = supervisor
        self.config = supervisor.config
        self.db = ManagedConnection("maintenance", url, self.config)
        self.listen_db = ManagedConnection("listen", url, self.config)
        self.reaper = LeaseReaper(node=supervisor.node.name, holder=supervisor.holder)
        self.leader_of: int | None = None  # the connection generation we lead on
        self.next_reap = 0.0
        self.pruner = Pruner(keep_seconds=self.config.retention_seconds)
        self.next_prune = 0.0
        self.next_gauges = time.monotonic() + GAUGES_FIRST_AFTER_SECONDS
        self.next_summary = 0.0
        self.summarised = (0, 0)
        # The leader's figures for the queue gauges (empty on other nodes; see metrics.py).
        self.gauges: dict[str, Any] = {}
        self.queues_seen: set[str] = set()

    @property
    def interval(self) -> float:
        # Renew well before a lease can lapse; beat as often as the node heartbeat asks.
        return min(self.config.node_heartbeat, self.config.lease_seconds / 3)

    @property
    def is_leader(self) -> bool:
        return self.leader_of is not None and self.leader_of == self.db.generation

    async def start(self) -> None:
        """Reap this node's earlier runs at once, so a restart does not wait for leases."""
        try:
            reaped = await self.db.run(self.reaper.run_once)
        except DatabaseDown:
            return
        if reaped:
            self._count_lost(reaped)
            log.warning(
                "requeued jobs of an earlier run of this node",
                extra={"node": self.sup.node.name, "jobs": len(reaped)},
            )

    def _count_lost(self, reaped: list[tuple[Any, ...]]) -> None:
        self.sup.more_work_may_exist()  # requeued attempts may be ready at once
        tally = self.sup.tally
        for _, type_, queue, state in reaped:
            key = (type_, queue)
            tally.lost[key] += 1
            if state == "dead":
                tally.dead[key] += 1
            elif state == "cancelled":
                tally.cancelled[key] += 1
            else:
                tally.retried[key] += 1

    async def loop(self) -> None:
        await self.start()
        while True:
            started = time.monotonic()
            with contextlib.suppress(DatabaseDown):
                await self.tick()
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    def log_summary(self) -> None:
        """Progress a person can see: what this node finished since the last summary."""
        now = time.monotonic()
        done = (self.sup.finished_ok, self.sup.finished_bad)
        if now < self.next_summary or done == self.summarised:
            return
        self.next_summary = now + SUMMARY_EVERY_SECONDS
        log.info(
            "jobs finished",
            extra={
                "node": self.sup.node.name,
                "succeeded": done[0] - self.summarised[0],
                "failed": done[1] - self.summarised[1],
                "busy": self.sup.busy(),
            },
        )
        self.summarised = done

    async def tick(self) -> None:
        self.log_summary()
        await self.db.run(self._beat_and_renew)
        if not self.is_leader:
            await self.db.run(self._try_lead)
        if self.is_leader and self.config.retention_seconds and time.monotonic() >= self.next_prune:
            self.next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
            pruned = await self.db.run(self.pruner.run_once)
            if pruned:
                log.info(
                    "pruned finished jobs past retention",
                    extra={"node": self.sup.node.name, "jobs": pruned},
                )
        if time.monotonic() >= self.next_reap:
            self.next_reap = time.monotonic() + self.config.reaper_interval_seconds
            # The leader reaps as soon as a lease expires. Every other node is a backstop for a
            # leader that is alive but paused (its advisory lock outlives its usefulness): it
            # reaps leases that have been expired for a whole lease period more.
            overdue = 0.0 if self.is_leader else self.config.lease_seconds
            reaped = await self.db.run(lambda conn: self.reaper.run_once(conn, overdue))
            if reaped:
                self._count_lost(reaped)
                log.warning(
                    "lease reaper requeued lost attempts",
                    extra={
                        "node": self.sup.node.name,
                        "jobs": len(reaped),
                        "leader": self.is_leader,
                    },
                )
        if not self.is_leader:
            self.gauges = {}
        elif self.sup.http and time.monotonic() >= self.next_gauges:
            # Only for a node whose /metrics someone can scrape, and not at every beat:
            # counting a big backlog costs the database as much as a few thousand jobs.
            self.next_gauges = time.monotonic() + self.config.queue_stats_seconds
            self.gauges = await self.db.run(self._read_gauges)

    async def _read_gauges(self, conn: Any) -> dict[str, Any]:
        cur = await conn.execute(sql("queue_gauges"))
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        for queue, state, count, age in await cur.fetchall():
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
        cur = await conn.execute(sql("node_heartbeat_ages"))
        ages = await cur.fetchall()
        return {
            "queue_depth": depth,
            "oldest_ready_age": sorted(oldest.items()),
            "heartbeat_age": [tuple(r) for r in ages],
        }

    async def _beat_and_renew(self, conn: Any) -> None:
        await conn.execute(
            sql("upsert_node"),
            self.sup.node.heartbeat_params(workers=self.sup.desired, busy=self.sup.busy()),
        )
        held = self.sup.held_job_ids()
        if not held:  # an idle node spends no query on leases
            return
        cur = await conn.execute(
            sql("renew_leases"),
            {"holder": self.sup.holder, "lease_seconds": self.config.lease_seconds, "ids": held},
            prepare=False,
        )
        renewed = await cur.fetchall()
        self.sup.tally.lease_renewals += len(renewed)
        for job_id, attempt, cancel_requested in renewed:
            if cancel_requested:
                self.sup.cancel_running(job_id, attempt)

    async def _try_lead(self, conn: Any) -> None:
        cur = await conn.execute(sql("try_leadership"))
        row = await cur.fetchone()
        if row and row[0]:
            self.leader_of = self.db.generation
            log.info("leading maintenance", extra={"node": self.sup.node.name})

    async def listen_loop(self) -> None:
        while True:
            try:
                await self.listen_db.run(self._listen)
            except DatabaseDown:
                await asyncio.sleep(max(0.2, self.listen_db.retry_at - time.monotonic()))

    async def _listen(self, conn: Any) -> None:
        await conn.execute(f"LISTEN {LISTEN_CHANNEL}")
        await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
        self.sup.more_work_may_exist()  # anything that arrived while we were not listening
        # Bounded like every call: come back every so often to prove the connection lives.
        async for note in conn.notifies(timeout=self.config.statement_timeout_seconds):
            if note.channel == CANCEL_CHANNEL:
                with contextlib.suppress(ValueError):
                    self.sup.cancel_running(int(note.payload))
            else:
                self.sup.more_work_may_exist()

    async def stop(self) -> None:
        with contextlib.suppress(DatabaseDown):
            await self.db.run(
                lambda conn: conn.execute(sql("delete_node"), self.sup.node.identity_params())
            )
        await self.db.close()
        await self.listen_db.close()
