"""The supervisor: one process per node, the only parent of its workers.

One asyncio loop, one object. Signals only set state and wake the loop. The loop's tasks:
  work      - write outcomes in batches, claim batches for idle capacity, hand them to children
  watch     - kill children that are silent or over their job's timeout; converge the count
  maintain  - node heartbeat, lease renewal, cancel requests; as leader, the lease reaper
  listen    - LISTEN for new jobs, so an idle node starts one within milliseconds
A child's death is noticed in `reap` (SIGCHLD) and settled in `_settle` once its last words
(outcomes still in its socket) are read: the job it was running is recorded with the cause.
Children are handled in pool.py; what waits to be written, in outbox.py.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections import deque
from enum import Enum
from typing import Any

from jobfleet.jobs import ClaimedJob
from jobfleet.log import get_logger
from jobfleet.metrics import Tally, directory, write_snapshot
from jobfleet.queries import sql
from jobfleet.settings import Settings
from jobfleet.store import Statement, claim_statement, claimed_jobs
from jobfleet.supervisor.children import Child
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.http_child import HttpChild
from jobfleet.supervisor.maintenance import Maintenance
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox, run_pipelined
from jobfleet.supervisor.pool import TICK_SECONDS, WorkerPool
from jobfleet.supervisor.waker import Waker
from jobfleet.worker import protocol
from jobfleet.worker.slots import SlotTable

log = get_logger("jobfleet.supervisor")

IDLE_POLL_MIN, IDLE_POLL_MAX = 0.05, 1.0
# Failures are logged one by one (they are the exception), but never more than this a batch.
FAILURES_LOGGED_PER_FLUSH = 20
# After the grace period, how long a draining node keeps trying to write what it holds.
SHUTDOWN_FLUSH_SECONDS = 10.0
LANES = 2
# How often counts reach /metrics; the HTTP child's restarts are checked as often.
METRICS_SECONDS = 1.0
FAILED_OUTCOMES = frozenset(("failed", "crashed", "timed_out"))


class State(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # no new claims; children finish what they hold
    STOPPED = "stopped"


class Supervisor(WorkerPool):
    def __init__(
        self,
        node: Node,
        config: Settings,
        url: str,
        *,
        workers: int,
        burst: bool,
        http: list[HttpChild] | None = None,
    ) -> None:
        self.node = node
        self.config = config
        self.burst = burst
        self.desired = workers
        # locked_by names this run of the node: a restart under the same name is a new holder.
        self.holder = f"{node.name}/{secrets.token_hex(4)}"
        self.slots = SlotTable(max(64, 4 * workers))
        self.free_slots = list(range(self.slots.size))
        self.children: dict[int, Child] = {}
        self.state = State.RUNNING
        self.exit_code = 0
        self.dispatcher = Dispatcher()
        # Claims and outcomes share LANES connections: each lane writes outcomes when they
        # wait and no other lane is writing, else claims for the children's free room, so
        # PostgreSQL works on two statements at once whatever the mix.
        self.lanes = [
            ManagedConnection(f"lane-{n + 1}", url, config, raw_json=True) for n in range(LANES)
        ]
        self.outbox = Outbox(on_arrival=self._wake)
        self.flushing = False
        self.claiming = 0  # jobs asked for by claims in flight
        self.idle_wait = IDLE_POLL_MIN
        self.next_poll = 0.0
        self.finished_ok = self.finished_bad = 0
        self.late_results = 0
        self.deaths: deque[float] = deque()
        self.stall_ended = 0.0  # when the supervisor last came back from a pause
        self.spawn_not_before = 0.0
        self.sigints = 0
        self.waker = Waker()  # the claim loop: room in the children, new work, state changes
        self.work_hint = True  # there may be work: claim without waiting out the idle backoff
        self.stopped = asyncio.Event()
        self.grace_deadline: float | None = None
        self.maintenance = Maintenance(self, url)
        self.tally = Tally(node.name)
        self.http = http or []
        self.db_errors_seen: dict[str, int] = {}

    # -- the life of the node --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, action in (
            (signal.SIGTERM, self.handle_term),
            (signal.SIGINT, self.handle_int),
            (signal.SIGQUIT, self.handle_quit),
            (signal.SIGCHLD, self.reap),
            (signal.SIGTTIN, self.handle_ttin),
            (signal.SIGTTOU, self.handle_ttou),
        ):
            loop.add_signal_handler(sig, action)
        await self.maintenance.start()
        log.info(
            "node started",
            extra=self._fields(
                workers=self.desired, types=self.node.types, queues=self.node.queues or "*"
            ),
        )
        self.manage_children()
        for http in self.http:
            http.start()
        tasks = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                *((db.name, self.lane_loop(db)) for db in self.lanes),
                ("watch", self.watch_loop()),
                ("maintain", self.maintenance.loop()),
                ("listen", self.maintenance.listen_loop()),
                ("metrics", self.metrics_loop()),
            )
        ]
        for task in tasks:
            task.add_done_callback(self._task_ended)
        try:
            await self.stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for http in self.http:  # (no last publish of metrics: their directory goes too)
                await http.stop()
                http.close()
            await self.maintenance.stop()
            for db in self.lanes:
                await db.close()
        log.info(
            "node stopped",
            extra=self._fields(
                succeeded=self.finished_ok,
                failed=self.finished_bad,
                late_results=self.late_results,
            ),
        )
        return self.exit_code

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        """A loop that ends by itself is a bug: say so loudly and stop the node (its leases
        bring its jobs back) rather than run on half-working."""
        if task.cancelled() or self.state is State.STOPPED:
            return
        log.critical(
            "a supervisor loop failed; stopping the node",
            exc_info=task.exception(),
            extra=self._fields(loop=task.get_name()),
        )
        self.exit_code = 1
        self.handle_quit()

    def held_job_ids(self) -> list[int]:
        """Every job this run holds a lease on: handed to a child, or finished and waiting
        to be written."""
        ids = [job_id for child in self.children.values() for job_id in child.assigned]
        ids.extend(self.outbox.job_ids())
        return ids

    def _running(self) -> bool:
        return self.state is State.RUNNING

    # -- signals: set state, wake the loop, nothing more --

    def handle_term(self) -> None:
        self.begin_drain("SIGTERM")

    def handle_int(self) -> None:
        self.sigints += 1
        if self.sigints == 1:
            self.begin_drain("SIGINT (again for a fast exit)")
        else:
            self.handle_quit()

    def handle_quit(self) -> None:
        """Fast exit: kill the children and go; their leases bring the jobs back."""
        log.warning(
            "fast exit: killing workers, leases will requeue their jobs", extra=self._fields()
        )
        for child in self.children.values():
            child.signal(signal.SIGKILL)
        self.state = State.STOPPED
        self.stopped.set()

    def handle_ttin(self) -> None:
        self.desired += 1
        log.info("workers wanted", extra=self._fields(workers=self.desired))
        self.manage_children()

    def handle_ttou(self) -> None:
        self.desired = max(1, self.desired - 1)
        log.info("workers wanted", extra=self._fields(workers=self.desired))
        self.manage_children()

    def begin_drain(self, why: str) -> None:
        if self.state is not State.RUNNING:
            return
        self.state = State.DRAINING
        self.grace_deadline = time.monotonic() + self.config.grace_seconds
        log.info(
            "draining: no new jobs; waiting for running ones",
            extra=self._fields(reason=why, grace_seconds=self.config.grace_seconds),
        )
        for child in self.children.values():
            self._ask_to_leave(child)
        self.waker.wake()

    # -- the database side of the hot path --

    async def lane_loop(self, db: ManagedConnection) -> None:
        """One connection's work: write the outcomes that wait (one lane at a time), else
        claim for the children's free room, else wait to be woken."""
        while True:
            if self.work_hint:  # NOTIFY, or jobs we put back: look now, whatever the backoff
                self.work_hint, self.idle_wait, self.next_poll = False, IDLE_POLL_MIN, 0.0
            try:
                if self.outbox and not self.flushing:
                    await self._flush(db)
                elif (claim := self._claim_statement()) is not None:
                    await self._claim(db, claim)
                else:
                    # Woken by outcomes, room in the children, new work; else the backoff.
                    pause = self.next_poll - time.monotonic()
                    await self.waker.wait(pause if pause > 0 else TICK_SECONDS)
            except DatabaseDown:
                await asyncio.sleep(min(1.0, max(0.05, db.retry_at - time.monotonic())))
            self._check_drained()

    def _wake(self) -> None:
        self.waker.wake()

    def _capacity(self) -> int:
        if self.state is not State.RUNNING:
            return 0
        return self.dispatcher.capacity(self.live_children())

    def _claim_statement(self) -> Statement | None:
        """The claim for the room the children have now (less what claims in flight will
        bring), or None: no room, or an idle backoff not yet over."""
        if time.monotonic() < self.next_poll:
            return None
        want = self._capacity() - self.claiming
        if want <= 0 or (self.claiming and want < self.dispatcher.batch):
            return None
        return claim_statement(
            holder=self.holder,
            types=self.node.types,
            queues=self.node.queues,
            limit=want,
            lease_seconds=self.config.lease_seconds,
        )

    async def _claim(self, db: ManagedConnection, statement: Statement) -> None:
        want = statement[1]["limit"]
        self.claiming += want
        try:
            rows = await db.run(lambda conn: run_pipelined(conn, [statement]))
        finally:
            self.claiming -= want
        if self._dispatch(claimed_jobs(rows[0])):
            self.idle_wait, self.next_poll = IDLE_POLL_MIN, 0.0
            return
        if self.burst and await self._burst_done(db):
            self.begin_drain("burst: nothing left to run")
        self.next_poll = time.monotonic() + self.idle_wait
        if not self._in_flight():  # the backoff grows only while this node is idle too
            self.idle_wait = min(self.idle_wait * 2, IDLE_POLL_MAX)

    def _in_flight(self) -> bool:
        """Jobs held by children, outcomes waiting or being written, claims under way."""
        return (
            any(c.assigned for c in self.children.values())
            or bool(self.outbox)
            or self.flushing
            or bool(self.claiming)
        )

    def _dispatch(self, jobs: list[ClaimedJob]) -> int:
        """Hand claimed jobs to the children, a batch message each; return how many."""
        if not jobs:
            return 0
        if self.state is not State.RUNNING:  # a drain began while we waited: give them back
            self.outbox.add_releases((j.id, j.attempt) for j in jobs)
            return 0
        deals, leftovers = self.dispatcher.assign(jobs, self.live_children())
        self.outbox.add_releases((j.id, j.attempt) for j in leftovers)
        tally = self.tally
        tally.observe_batch(len(jobs))
        for child, batch in deals:
            for job in batch:
                child.assigned[job.id] = job
                key = (job.type, job.queue)
                tally.started[key] += 1
                tally.observe_wait(key, job.waited)
            self._send(
                child,
                (protocol.JOBS, [(j.id, j.attempt, j.type, j.payload, j.timeout) for j in batch]),
            )
        return len(jobs)

    async def _flush(self, db: ManagedConnection) -> None:
        """Write what waits: outcomes, releases, progress."""
        self.flushing = True
        try:
            flushed = await self.outbox.flush(db, self.node.name, self.config)
        finally:
            self.flushing = False
        self.finished_ok += flushed.succeeded
        self.finished_bad += len(flushed.failures)
        for failure in flushed.failures[:FAILURES_LOGGED_PER_FLUSH]:
            last_line = (failure.error or "").strip().splitlines()[-1:] or [""]
            log.info(
                "job attempt failed",
                extra=self._fields(
                    job=failure.job_id,
                    attempt=failure.attempt,
                    outcome=failure.outcome,
                    worker=failure.pid,
                    error=last_line[0][:200],
                ),
            )
        if len(flushed.failures) > FAILURES_LOGGED_PER_FLUSH:
            log.info(
                "more attempts failed",
                extra=self._fields(count=len(flushed.failures) - FAILURES_LOGGED_PER_FLUSH),
            )
        if flushed.requeued or (self.burst and not self._in_flight()):
            # A retry or a released job may be ready at once; a burst node that just wrote
            # its last outcomes looks at once whether it is done, not after its backoff.
            self.work_hint = True
        tally = self.tally
        for _, type_, queue, state, outcome in flushed.failed_rows:
            key = (type_, queue)
            if outcome in FAILED_OUTCOMES:
                tally.failed[(type_, queue, outcome)] += 1
            if state == "queued":
                tally.retried[key] += 1
            elif state == "dead":
                tally.dead[key] += 1
            elif state == "cancelled":
                tally.cancelled[key] += 1
        if flushed.late:
            tally.late_completions += flushed.late
            self.late_results += flushed.late
            log.warning(
                "late results dropped: their attempts had been replaced",
                extra=self._fields(late=flushed.late),
            )

    async def _burst_done(self, db: ManagedConnection) -> bool:
        if self._in_flight():
            return False
        return await db.run(self._remaining_is_zero)

    async def _remaining_is_zero(self, conn: Any) -> bool:
        cur = await conn.execute(
            sql("burst_remaining"),
            {
                "types": self.node.types,
                "queues": None if self.node.queues is None else list(self.node.queues),
            },
        )
        row = await cur.fetchone()
        return row is not None and row[0] == 0

    def _check_drained(self) -> None:
        """Once draining and every child is gone and everything is written, stop (never
        with a claim or a write in flight: its jobs would be left to their leases)."""
        if self.state is not State.DRAINING or self.children or self.claiming or self.flushing:
            return
        if self.outbox:
            deadline = (self.grace_deadline or 0) + SHUTDOWN_FLUSH_SECONDS
            if time.monotonic() < deadline:
                return
            log.error(
                "could not write every outcome before exiting; leases will requeue those jobs",
                extra=self._fields(unwritten=self.outbox.waiting),
            )
            self.exit_code = 1
        self.state = State.STOPPED
        self.stopped.set()

    # -- metrics and the HTTP child --

    async def metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(METRICS_SECONDS)
            self.publish_metrics()
            for http in self.http:
                if self.state is State.RUNNING:
                    http.restart_if_due()

    def publish_metrics(self) -> None:
        """Counts to the metric files; the node's gauges to the snapshot /metrics serves."""
        for db in (*self.lanes, self.maintenance.db, self.maintenance.listen_db):
            new = db.errors - self.db_errors_seen.get(db.name, 0)
            if new:
                self.tally.database_errors[db.name] += new
                self.db_errors_seen[db.name] = db.errors
        path = directory()
        if path is None:
            return
        self.tally.publish()
        write_snapshot(
            path,
            {
                "node": self.node.name,
                "workers": len(self.staying_children()),
                "busy": self.busy(),
                "leader": int(self.maintenance.is_leader),
                **self.maintenance.gauges,
            },
        )

    def on_other_exit(self, pid: int, status: int) -> None:
        """A reaped process that is not a worker: the HTTP child, restarted unless stopping."""
        for http in self.http:
            if http.pid == pid:
                http.on_exit(status, restart=self.state is State.RUNNING)
                self.tally.child_restarts["http"] += 1

    # -- cancellation, from the maintenance loop --
