"""The node's control connection: it schedules the maintenance services (heartbeat and lease
renewal on every node; leadership and the leader's services: the lease reaper, the pruner,
the queue gauges; one module each in maintenance/, each with a run_once), LISTENs for new
work and cancel requests between them (listener.py), and takes a third lane's share of the
hot path while the node is busy.

One session does all three. Leadership is an advisory lock held by this session, so it ends
with it. LISTEN needs a session that is listening whenever the node is idle, and an idle node
runs nothing else. Notifications that arrive while the session runs a statement are acted on
as psycopg reads them (the connection's notify handler), so none is lost or waits. While the
node is busy, the control connection reads its socket between hot-path steps now and then,
and the lease renewals report cancel requests too (a job claimed moments before a beat, at
the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.settings import Settings
from jobfleet.supervisor.cadence import until_next
from jobfleet.supervisor.database import (
    DatabaseDown,
    ManagedConnection,
    StatementError,
)
from jobfleet.supervisor.lanes import Lanes
from jobfleet.supervisor.listener import Listener
from jobfleet.supervisor.maintenance.heartbeat import Heartbeat
from jobfleet.supervisor.maintenance.leadership import Leadership
from jobfleet.supervisor.maintenance.lease_reaper import LeaseReaper, Reaped
from jobfleet.supervisor.maintenance.lease_renewal import LeaseRenewal
from jobfleet.supervisor.maintenance.limit_recount import RECOUNT_INTERVAL_SECONDS, LimitRecount
from jobfleet.supervisor.maintenance.pruner import Pruner
from jobfleet.supervisor.maintenance.queue_gauges import GAUGES_FIRST_AFTER_SECONDS, QueueGauges
from jobfleet.supervisor.maintenance.scheduler import Scheduler
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.pool import WorkerPool

log = get_logger("jobfleet.supervisor")

SUMMARY_EVERY_SECONDS = 10.0
# Limits set with `types set`, the HTTP API or a node's decorator are announced (NOTIFY) and
# read at once, and again after every reconnection; this look is for rows changed by hand.
# At every heartbeat it was a fifth of an idle node's queries: 50 idle nodes cost the
# database 58 queries/s (`jobfleet bench --scenario idle`), over the 50 the fleet may cost.
LIMITS_LOOK_SECONDS = 30.0
# How often a node busy on its hot path looks at the notifications that arrived meanwhile.
HEAR_WHILE_BUSY_SECONDS = 0.05


class Control:
    def __init__(
        self,
        node: Node,
        config: Settings,
        url: str,
        *,
        holder: str,
        pool: WorkerPool,
        lanes: Lanes,
        outbox: Outbox,
        gauges_wanted: bool,
    ) -> None:
        self.node = node
        self.config = config
        self.holder = holder
        self.pool = pool
        self.lanes = lanes  # hot-path steps while busy; told of new work and due times
        self.outbox = outbox
        self.tally = lanes.tally
        self.gauges_wanted = gauges_wanted  # someone can scrape this node's /metrics
        # raw_json: the control connection claims jobs too, as the lanes do.
        self.db = ManagedConnection("control", url, self.config, raw_json=True)
        self.heartbeat = Heartbeat(node)
        # Leases younger than a quarter of a renewal interval are left alone (renew_leases):
        # the job claimed moments ago. Renewed at most 1.25 intervals old, a lease keeps at
        # least lease - 1.25 x interval ahead of it (23.75 s of 30 at the defaults).
        self.renewal = LeaseRenewal(holder, config.lease_seconds, fresh_seconds=self.interval / 4)
        # This node's earlier runs are looked for by the reaper for a lease's time from now:
        # every lease they were granted before this run began has run out by then.
        self.reaper = LeaseReaper(
            node=node.name,
            holder=holder,
            earlier_runs_until=time.monotonic() + config.lease_seconds,
        )
        self.listener = Listener(
            node,
            self.db,
            pool=pool,
            lanes=lanes,
            outbox=outbox,
            renewal=self.renewal,
            wait_cap=config.statement_timeout_seconds,
        )
        self.db.on_notify = self.listener.on_notification
        self.leadership = Leadership()
        self.leader_of: int | None = None  # the connection generation we lead on
        self.next_reap = 0.0
        self.pruner = Pruner(keep_seconds=config.retention_seconds)
        self.recount = LimitRecount()
        self.next_recount = 0.0
        self.next_limits_look = time.monotonic() + LIMITS_LOOK_SECONDS  # read at start anyway
        self.queue_gauges = QueueGauges()
        self.scheduler = Scheduler(node.name, stale_after=3 * config.node_heartbeat)
        self.next_schedule: float | None = None  # when the soonest periodic tick falls due
        self.next_gauges = time.monotonic() + GAUGES_FIRST_AFTER_SECONDS
        self.next_summary = 0.0
        self.summarised = (0, 0, 0)
        # The leader's figures for the queue gauges (empty on other nodes; see metrics.py).
        self.gauges: dict[str, Any] = {}

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
        except StatementError as exc:  # the reaper's next round tries again
            self._refused(exc)
            return
        if reaped:
            self._count_lost(reaped)
            log.warning(
                "requeued jobs of an earlier run of this node",
                extra={"node": self.node.name, "jobs": len(reaped)},
            )

    async def _duty(self, work: Awaitable[None]) -> None:
        """A duty that its next turn tries again if the database is away or refuses it: the
        node goes on."""
        try:
            await work
        except DatabaseDown:
            pass
        except StatementError as exc:
            self._refused(exc)

    def _refused(self, exc: StatementError) -> None:
        self.tally.statement_errors["maintenance"] += 1
        log.error(
            "a maintenance statement was refused by the database",
            extra={"node": self.node.name, "reason": str(exc)},
        )

    def _count_lost(self, reaped: list[Reaped]) -> None:
        self.lanes.more_work_may_exist()  # requeued attempts may be ready at once
        tally = self.tally
        for job in reaped:
            key = (job.type, job.queue)
            tally.lost[key] += 1
            tally.count_after_attempt(key, job.state)

    async def loop(self) -> None:
        """Duties when due; between them, hot-path work the lanes left (only while the node is
        busy), else LISTEN until the next duty, a notification, or a wake-up of the node's
        loops (which may bring hot-path work)."""
        await self.start()
        next_tick = next_busy_hear = 0.0
        while True:
            now = time.monotonic()
            if self.next_schedule is not None and now >= self.next_schedule:
                try:
                    await self._schedule()
                except DatabaseDown:
                    self.next_schedule = now + 1.0
                except StatementError as exc:
                    self._refused(exc)
                    self.next_schedule = now + 1.0
                continue
            if now >= next_tick:
                # On the idle loops' grid (cadence.py): an idle node's beat comes in the same
                # wake-up as the watch of its children and the metrics.
                next_tick = now + until_next(max(0.05, self.interval), now)
                await self._duty(self.tick())
                continue
            if self.pruner.more and self._prune_due(now):  # a pass under way, slice by slice
                await self._duty(self._prune())
                continue
            if not self.listener.listening:
                # Before any hot-path work: a node busy from its start (or since a reconnect)
                # would otherwise not listen until its backlog ran out, and hear a cancel
                # only at a lease renewal.
                try:
                    await self.db.run(self.listener.start_listening)
                except DatabaseDown:
                    await self._until_retry()
                continue
            if self.lanes.in_flight() and await self.lanes.lane_step(self.db):
                # Always stepping, the node never waits for notifications: those read during
                # its statements are acted on then, and the socket is read now and then
                # without waiting, so a cancel is acted on at once rather than at the next
                # lease renewal, and new work ends the dry claims' pauses.
                if now >= next_busy_hear and self.listener.listening:
                    next_busy_hear = now + HEAR_WHILE_BUSY_SECONDS
                    with contextlib.suppress(DatabaseDown):
                        await self.db.run(self.listener.read_now)
                continue
            due = min(next_tick, self.next_schedule or next_tick)
            if self.pruner.more and self.is_leader:
                due = min(due, self.pruner.next_due)
            try:
                await self.listener.listen_until_woken(due - now)
            except DatabaseDown:
                await self._until_retry()

    async def _until_retry(self) -> None:
        """Wait, the database being down, until the connection may be tried again."""
        await asyncio.sleep(min(1.0, max(0.05, self.db.retry_at - time.monotonic())))

    def log_summary(self) -> None:
        """Progress a person can see: what this node finished since the last summary."""
        now = time.monotonic()
        lanes = self.lanes
        done = (lanes.finished_ok, lanes.finished_bad, lanes.finished_cancelled)
        if now < self.next_summary or done == self.summarised:
            return
        self.next_summary = now + SUMMARY_EVERY_SECONDS
        log.info(
            "jobs finished",
            extra={
                "node": self.node.name,
                "succeeded": done[0] - self.summarised[0],
                "failed": done[1] - self.summarised[1],
                "cancelled": done[2] - self.summarised[2],
                "running": self.pool.busy()[1],
            },
        )
        self.summarised = done

    async def tick(self) -> None:
        self.log_summary()
        await self.db.run(self._beat_and_renew)
        if not self.is_leader and await self.db.run(self.leadership.run_once):
            self.leader_of = self.db.generation
            log.info("leading maintenance", extra={"node": self.node.name})
        if self._prune_due(time.monotonic()):
            await self._prune()
        if self.is_leader and time.monotonic() >= self.next_recount:
            self.next_recount = time.monotonic() + RECOUNT_INTERVAL_SECONDS
            await self._recount_limits()
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
                        "node": self.node.name,
                        "jobs": len(reaped),
                        "leader": self.is_leader,
                    },
                )
        if self.is_leader:
            await self._schedule()
        else:
            self.next_schedule = None
        if not self.is_leader:
            self.gauges = {}
        elif self.gauges_wanted and time.monotonic() >= self.next_gauges:
            # Only for a node whose /metrics someone can scrape, and not at every beat:
            # counting a big backlog costs the database as much as a few thousand jobs.
            self.next_gauges = time.monotonic() + self.config.queue_stats_seconds
            self.gauges = await self.db.run(self.queue_gauges.run_once)

    def _prune_due(self, now: float) -> bool:
        return (
            self.is_leader and bool(self.config.retention_seconds) and now >= self.pruner.next_due
        )

    async def _prune(self) -> None:
        """One slice of a pruning pass (the next one paced by the pruner)."""
        pruned = await self.db.run(self.pruner.run_paced)
        if pruned:
            log.info(
                "pruned finished jobs past retention",
                extra={"node": self.node.name, "jobs": pruned},
            )

    async def _recount_limits(self) -> None:
        for type, counted, running, adopted, key in await self.db.run(self.recount.run_once):
            if counted + adopted != running:  # only a change by hand can make it drift
                log.warning(
                    "corrected the running count of a limited type",
                    extra={
                        "node": self.node.name,
                        "type": type,
                        "key": key,
                        "was": counted,
                        "now": running,
                    },
                )
            if adopted:
                log.info(
                    "jobs running from before their type's limit now count toward it",
                    extra={"node": self.node.name, "type": type, "jobs": adopted},
                )

    async def _schedule(self) -> None:
        """The leader's periodic jobs: enqueue the ticks due, and wake for the next."""
        if not self.is_leader:
            self.next_schedule = None
            return
        wait = await self.db.run(self.scheduler.run_once)
        self.next_schedule = None if wait is None else time.monotonic() + max(0.0, wait)

    async def _beat_and_renew(self, conn: Any) -> None:
        # Limits changed by hand (no NOTIFY) reach the node too, within LIMITS_LOOK_SECONDS.
        if time.monotonic() >= self.next_limits_look:
            self.next_limits_look = time.monotonic() + LIMITS_LOOK_SECONDS
            self.lanes.limits.stale = True
        await self.heartbeat.run_once(conn, workers=self.pool.desired, busy=self.pool.busy()[0])
        renewed = await self.renewal.run_once(
            conn, self.pool.held_job_ids() + self.outbox.job_ids()
        )
        self.tally.lease_renewals += len(renewed)
        for job in renewed:
            if job.cancel_requested:
                self.pool.cancels.request(job.job_id, job.attempt)

    async def stop(self) -> None:
        with contextlib.suppress(DatabaseDown):
            await self.db.run(
                lambda conn: conn.execute(sql("delete_node"), self.node.identity_params())
            )
        await self.db.close()
