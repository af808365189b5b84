"""The LISTEN side of the node's control connection: it LISTENs on every new session, waits for
notifications while the node has nothing else for it, and acts on each one as it is read: new
work, a job's cancel, changed limits, the soonest scheduled job.

Notifications that arrive while the session runs another statement (a duty, a hot-path step)
reach `on_notification` as psycopg reads them, so none is lost or waits. A job announced to a
node that holds none, heard while the session waits for notifications, is claimed at once on
this session, the one that heard of it (see `listen_until_woken`), rather than by a lane
woken for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Collection
from typing import Any

import psycopg

from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.supervisor.database import ManagedConnection, receive, socket_ready
from jobfleet.supervisor.lanes import Lanes
from jobfleet.supervisor.maintenance.lease_renewal import LeaseRenewal
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.pool import WorkerPool

log = get_logger("jobfleet.supervisor")

LISTEN_CHANNEL = "jobfleet_jobs"
CANCEL_CHANNEL = "jobfleet_cancel"
# Ready jobs, all in one queue (the jobs_notify_ready trigger, 0017_queue_wakeups.sql).
QUEUE_PREFIX = "queue "


def wakes(payload: str, queues: Collection[str] | None) -> bool:
    """Whether a jobs-channel notification of ready work concerns a node serving `queues`
    (None: every queue): 'queue <name>' only the nodes serving that queue, anything else
    (jobs of several queues, a retry, a requeue) every node."""
    if payload.startswith(QUEUE_PREFIX):
        return queues is None or payload[len(QUEUE_PREFIX) :] in queues
    return True


class Listener:
    def __init__(
        self,
        node: Node,
        db: ManagedConnection,
        *,
        pool: WorkerPool,
        lanes: Lanes,
        outbox: Outbox,
        renewal: LeaseRenewal,
        wait_cap: float,
    ) -> None:
        self.node = node
        self.db = db  # the control connection
        self.pool = pool
        self.lanes = lanes
        self.outbox = outbox
        self.renewal = renewal
        self.wait_cap = wait_cap  # the longest wait for notifications (within the run's bound)
        self.listening_on: int | None = None  # the connection generation that LISTENs
        self._hearing = False  # in `hear`: work heard now may be claimed here
        self._claim_heard = False  # work heard in `hear`, to be claimed here

    @property
    def listening(self) -> bool:
        return self.listening_on == self.db.generation and self.db.connected

    async def start_listening(self, conn: Any) -> None:
        await conn.execute(f"LISTEN {LISTEN_CHANNEL}")
        await conn.execute(f"LISTEN {CANCEL_CHANNEL}")
        # Scheduled jobs are announced on the database's clock; learn how far ours is off.
        asked = time.time()
        cur = await conn.execute(sql("database_clock"))
        row = await cur.fetchone()
        answered = time.time()
        if row is not None:
            self.lanes.db_clock_offset = float(row[0]) - (asked + answered) / 2
        self.listening_on = self.db.generation
        # Anything that arrived, or was scheduled, while nobody listened; cancels too, for the
        # jobs held (a node's first claims are made before it listens). Read, not renewed:
        # those claims may hold thousands of jobs, a row written each.
        self.lanes.due_unknown = True
        self.lanes.limits_changed()
        held = self.pool.held_job_ids() + self.outbox.job_ids()
        for job_id, attempt in await self.renewal.cancels_asked(conn, held):
            self.pool.cancels.request(job_id, attempt)

    async def read_now(self, conn: Any) -> None:
        """Act on the notifications that arrived, without waiting (a busy node's look)."""
        receive(conn)

    async def hear(self, conn: Any, seconds: float) -> None:
        """Act on the notifications that arrived; if none had, wait up to `seconds` for more,
        or for a wake of the node's loops, and act on what came. The wait watches the
        connection's socket itself: psycopg's notifies() wakes every 0.1 s while it waits, 10
        needless turns of an idle node's loop a second (a tenth of its CPU)."""
        self._hearing = True
        try:
            if receive(conn) or seconds <= 0:
                return
            # One future for the socket, the waker and the time: no task of its own for each,
            # and none to cancel and collect after each job (py-spy: an idle node's loop
            # turned about 12 times a job, two of them new tasks).
            waker = self.lanes.waker
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if not waker.watch(self.db.name, ready, reserve=True):
                return  # a wake came since the last wait: the loops look first
            try:
                await socket_ready(conn.pgconn.socket, seconds, ready=ready)
            finally:
                waker.unwatch(self.db.name, ready)
            receive(conn)
        finally:
            self._hearing = False

    async def listen_until_woken(self, seconds: float) -> None:
        """Hear notifications for up to `seconds`, or until the node's loops are woken.

        Work heard of here by a node that holds no jobs is claimed at once, on this session:
        its server process is awake (it has just sent the notification) where a lane's sleeps,
        and no lane has to be woken first. Measured with two idle nodes side by side, samples
        alternating (2,000 each, two pairs): from the enqueue call's return to the job's start
        0.02-0.04 ms shorter (p50 0.739 -> 0.719 and 0.899 -> 0.863 ms; 0.05-0.08 when the
        claim ran inside the wait's own run of the connection, which put it under the wait's
        time bound). The lanes are woken after that claim only when it left jobs behind. A
        wake of the node's loops does not cut the claim off (it ends as a lane's would); the
        task's cancellation does, as it does a lane's."""
        read = False
        try:
            await self.db.run(functools.partial(self.hear, seconds=min(seconds, self.wait_cap)))
            read = True
        finally:
            claim, self._claim_heard = self._claim_heard, False
            if claim and not read:
                self.lanes.waker.wake()  # not claimed here after all: the lanes claim it
        if not claim:
            return
        try:
            await self.lanes.lane_step(self.db)
        finally:
            if not self.lanes.queue_dry:
                self.lanes.waker.wake()

    def on_notification(self, note: psycopg.Notify) -> None:
        """One notification, acted on as soon as it is read: between statements (`hear`) or
        during one (psycopg passes those it reads then to the connection's handler, and would
        let an exception from here break off that statement: none leaves)."""
        try:
            if note.channel == CANCEL_CHANNEL:
                with contextlib.suppress(ValueError):
                    self.pool.cancels.request(int(note.payload))
            elif note.payload == "limits":  # a type's limits changed (types set, a node)
                self.lanes.limits_changed()
            elif note.payload.startswith("at "):  # the soonest of jobs scheduled for later
                with contextlib.suppress(ValueError):
                    self.lanes.work_due_at(float(note.payload[3:]))
            elif wakes(note.payload, self.node.queues):
                claim_here = (
                    self._hearing
                    and not self.pool.holds_jobs()
                    and not self.lanes.claims_in_flight()
                )
                self._claim_heard = self._claim_heard or claim_here
                self.lanes.more_work_may_exist(wake=not claim_here)
        except Exception:
            log.exception(
                "a notification could not be acted on",
                extra={"node": self.node.name, "channel": note.channel, "payload": note.payload},
            )
