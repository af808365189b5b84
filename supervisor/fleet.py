"""The supervisor: one process per node, the only parent of its workers.

One asyncio loop, one object. Signals only set state and wake the loop. The loop's tasks:
  work      - write outcomes in batches, claim batches for idle capacity, hand them to children
  watch     - kill children that are silent or over their job's timeout; converge the count
  maintain  - node heartbeat, lease renewal, cancel requests; as leader, the lease reaper
  listen    - LISTEN for new jobs, so an idle node starts one within milliseconds
A child's death is noticed in `reap` (SIGCHLD) and settled in `_settle` once its last words
(outcomes still in its socket) are read: the job it was running is recorded with the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections import deque
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.settings import Settings
from jobfleet.store import claim_async, record_async, release_async
from jobfleet.supervisor.children import Child, KillPlan, describe_exit, fork_child
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.maintenance import Maintenance
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.waker import Waker
from jobfleet.worker import protocol
from jobfleet.worker.loop import ChildConfig
from jobfleet.worker.slots import SlotTable

log = get_logger("jobfleet.supervisor")

TICK_SECONDS = 0.1
# Outcomes are written when this many wait, or when the oldest has waited FLUSH_SECONDS.
FLUSH_BATCH = 1000
FLUSH_SECONDS = 0.005
IDLE_POLL_MIN, IDLE_POLL_MAX = 0.05, 1.0
# Crash loop: more unexpected deaths than this within the window slows respawning down.
CRASH_WINDOW_SECONDS = 10.0
CRASH_BACKOFF_MAX_SECONDS = 10.0
# A dead child's socket is read to its end before its jobs are settled; not forever.
LAST_WORDS_SECONDS = 1.0
SHUTDOWN_FLUSH_SECONDS = 10.0


class State(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # no new claims; children finish what they hold
    STOPPED = "stopped"


class Supervisor:
    def __init__(
        self, node: Node, config: Settings, url: str, *, workers: int, burst: bool
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
        self.work_db = ManagedConnection("work", url, config, raw_json=True)
        self.pending: list[AttemptResult] = []
        self.pending_since = 0.0
        self.to_release: list[tuple[int, int]] = []
        self.progress: dict[tuple[int, int], tuple[float, str | None]] = {}
        self.late_results = 0
        self.deaths: deque[float] = deque()
        self.spawn_not_before = 0.0
        self.sigints = 0
        self.waker = Waker()
        self.work_hint = True  # there may be work: claim without waiting out the idle backoff
        self.stopped = asyncio.Event()
        self.grace_deadline: float | None = None
        self.maintenance = Maintenance(self, url)

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
        tasks = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                ("work", self.work_loop()),
                ("watch", self.watch_loop()),
                ("maintain", self.maintenance.loop()),
                ("listen", self.maintenance.listen_loop()),
            )
        ]
        try:
            await self.stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.maintenance.stop()
            await self.work_db.close()
        log.info("node stopped", extra=self._fields(late_results=self.late_results))
        return self.exit_code

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"node": self.node.name, **extra}

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

    def _ask_to_leave(self, child: Child) -> None:
        self.slots.set_drain(child.slot)  # checked between jobs
        self._send(child, (protocol.BYE,))  # wakes a child that waits for work

    # -- children: spawn, watch, reap, settle --

    def manage_children(self) -> None:
        """Converge the number of children to the desired count."""
        if self.state is not State.RUNNING:
            return
        alive = [
            c
            for c in self.children.values()
            if c.kill is None and c.exit_status is None and not self.slots.read(c.slot).drain
        ]
        if len(alive) > self.desired:
            for child in sorted(alive, key=lambda c: c.in_flight)[: len(alive) - self.desired]:
                self._ask_to_leave(child)
            return
        missing = self.desired - len(alive)
        now = time.monotonic()
        while missing > 0 and now >= self.spawn_not_before and self.free_slots:
            self.spawn()
            missing -= 1
            self._schedule_spawn_backoff(now)

    def spawn(self) -> None:
        slot = self.free_slots.pop(0)
        config = ChildConfig(
            index=slot,
            heartbeat_seconds=self.config.child_heartbeat_seconds,
            max_result_bytes=self.config.max_result_bytes,
            max_jobs=self.config.max_jobs_per_child,
            max_rss_bytes=self.config.max_child_rss_mb * 1024 * 1024,
        )
        pid, sock = fork_child(self.slots, slot, self.node.handlers, config)
        child = Child(pid=pid, slot=slot, sock=sock, born=time.monotonic())
        self.children[pid] = child
        child.reader = asyncio.create_task(self._read_child(child), name=f"child-{pid}")
        log.debug("worker started", extra=self._fields(worker=pid, slot=slot))

    def _schedule_spawn_backoff(self, now: float) -> None:
        while self.deaths and now - self.deaths[0] > CRASH_WINDOW_SECONDS:
            self.deaths.popleft()
        excess = len(self.deaths) - max(3, self.desired)
        if excess > 0:
            delay = min(CRASH_BACKOFF_MAX_SECONDS, 0.1 * 2**excess)
            self.spawn_not_before = now + delay
            log.error(
                "workers keep dying: slowing down restarts",
                extra=self._fields(
                    deaths=len(self.deaths),
                    window_seconds=CRASH_WINDOW_SECONDS,
                    next_spawn_in=round(delay, 2),
                ),
            )

    async def watch_loop(self) -> None:
        while True:
            self.watch_children()
            self.manage_children()
            self._check_drained()
            await asyncio.sleep(TICK_SECONDS)

    def watch_children(self) -> None:
        """Kill children that went silent or overran their job's timeout (SIGTERM, then
        SIGKILL), and cancel jobs that were asked to stop."""
        now = time.monotonic()
        for child in list(self.children.values()):
            if child.exit_status is not None:
                continue
            plan = child.kill
            if plan is not None:
                if not plan.sigkilled and now >= plan.sigkill_at:
                    plan.sigkilled = True
                    child.signal(signal.SIGKILL)
                continue
            view = self.slots.read(child.slot)
            job = child.assigned.get(view.job_id) if view.job_id else None
            silent = now - view.heartbeat
            if silent > self.config.child_silent_after:
                self.kill_child(
                    child,
                    "crashed",
                    f"worker stopped responding: no heartbeat for {silent:.1f} s",
                    job,
                )
            elif job is not None and job.timeout and now - view.started > job.timeout:
                self.kill_child(child, "timed_out", f"timeout after {job.timeout:g} s", job)
            elif self.grace_deadline is not None and now > self.grace_deadline and child.assigned:
                self.kill_child(
                    child,
                    "crashed",
                    "killed at shutdown: still running after the "
                    f"{self.config.grace_seconds:g} s grace period",
                    job,
                )

    def kill_child(
        self,
        child: Child,
        outcome: Any,
        reason: str,
        job: ClaimedJob | None,
        *,
        final: bool = False,
    ) -> None:
        child.kill = KillPlan(
            outcome, reason, job, time.monotonic() + self.config.kill_grace_seconds, final=final
        )
        log.warning(
            "killing worker",
            extra=self._fields(
                worker=child.pid,
                reason=reason,
                job=job.id if job else None,
                attempt=job.attempt if job else None,
            ),
        )
        child.signal(signal.SIGTERM)
        if self.config.kill_grace_seconds == 0:
            child.kill.sigkilled = True
            child.signal(signal.SIGKILL)

    def reap(self) -> None:
        """Collect every child that has exited (waitpid until none is left)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is not None:
                child.exit_status, child.exited_at = status, time.monotonic()
                asyncio.get_running_loop().create_task(self._settle(child))

    async def _settle(self, child: Child) -> None:
        """Account for a child that exited, once its last outcomes have been read."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LAST_WORDS_SECONDS):
                await child.eof.wait()
        if child.reader is not None:
            child.reader.cancel()
        if child.writer is not None:
            child.writer.close()
        else:
            child.sock.close()
        self.children.pop(child.pid, None)
        status = child.exit_status or 0
        cause = describe_exit(status)
        view = self.slots.read(child.slot)
        plan = child.kill
        running = child.assigned.get(view.job_id) if view.job_id else None
        if plan is not None and plan.job is not None and plan.job.id in child.assigned:
            running = plan.job
        if running is not None:
            child.assigned.pop(running.id)
            if plan is not None:
                outcome, reason, final = plan.outcome, f"{plan.reason} ({cause})", plan.final
            else:
                outcome, reason, final = "crashed", f"worker {cause}", False
            self._add_result(self._lost_job_result(running, child.pid, outcome, reason, final))
            log.warning(
                "job's worker died",
                extra=self._fields(
                    worker=child.pid,
                    job=running.id,
                    attempt=running.attempt,
                    outcome=outcome,
                    reason=reason,
                ),
            )
        # Jobs it held but had not started (or finished without reporting): run them again.
        self._note_waiting()
        self.to_release.extend((j.id, j.attempt) for j in child.assigned.values())
        child.assigned.clear()
        expected = child.bye is not None or (plan is not None and running is not None)
        if not expected:
            self.deaths.append(time.monotonic())
            if running is None:
                log.warning(
                    "worker died while idle", extra=self._fields(worker=child.pid, cause=cause)
                )
        self.free_slots.append(child.slot)
        self.waker.wake()
        self.manage_children()
        self._check_drained()

    def _lost_job_result(
        self, job: ClaimedJob, pid: int, outcome: Any, reason: str, final: bool
    ) -> AttemptResult:
        spec = self.node.handlers.get(job.type)
        return AttemptResult(
            job.id,
            job.attempt,
            outcome,
            error=reason,
            final=final,
            pid=pid,
            backoff=spec.backoff if spec else None,
            backoff_seconds=spec.backoff_seconds if spec else None,
        )

    # -- talking to children --

    async def _read_child(self, child: Child) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=child.sock)
        child.writer = writer
        try:
            while True:
                header = await reader.readexactly(protocol.HEADER.size)
                (size,) = protocol.HEADER.unpack(header)
                self._on_message(child, protocol.decode(await reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            child.eof.set()

    def _on_message(self, child: Child, message: Any) -> None:
        kind = message[0]
        if kind == protocol.DONE:
            doomed = child.kill.job.id if child.kill and child.kill.job else None
            for outcome in message[1]:
                if outcome.job_id == doomed:
                    continue  # its fate was decided when its child was marked for killing
                job = child.assigned.pop(outcome.job_id, None)
                if job is None:
                    continue
                outcome.pid = child.pid
                self.dispatcher.observe(outcome)
                self._add_result(outcome)
            self.waker.wake()
        elif kind == protocol.PROGRESS:
            _, job_id, attempt, fraction, text = message
            self._note_waiting()
            self.progress[(job_id, attempt)] = (fraction, text)
        elif kind == protocol.BYE:
            child.bye = message[1]
            log.debug("worker leaving", extra=self._fields(worker=child.pid, reason=message[1]))

    def _note_waiting(self) -> None:
        if not (self.pending or self.to_release or self.progress):
            self.pending_since = time.monotonic()

    def _send(self, child: Child, message: Any) -> None:
        if child.writer is not None and not child.writer.is_closing():
            child.writer.write(protocol.encode(message))

    def _add_result(self, result: AttemptResult) -> None:
        self._note_waiting()
        self.pending.append(result)
        if len(self.pending) >= FLUSH_BATCH:
            self.waker.wake()

    # -- the database side of the hot path --

    async def work_loop(self) -> None:
        idle = IDLE_POLL_MIN
        next_poll = 0.0
        while True:
            if self.work_hint:  # NOTIFY, or jobs we put back: look now, whatever the backoff
                self.work_hint, idle, next_poll = False, IDLE_POLL_MIN, 0.0
            now = time.monotonic()
            can_claim = self.state is State.RUNNING and self._capacity() > 0
            deadline = now + TICK_SECONDS
            if can_claim:
                deadline = min(deadline, next_poll)
            if self.pending or self.to_release or self.progress:
                deadline = min(deadline, self.pending_since + FLUSH_SECONDS)
            if deadline > now:
                await self.waker.wait(deadline - now)
            else:
                await asyncio.sleep(0)  # let the children's readers and signals in
            try:
                if self._flush_due():
                    await self._flush()
                if self._capacity() > 0 and time.monotonic() >= next_poll:
                    if await self._claim():
                        idle, next_poll = IDLE_POLL_MIN, 0.0
                    else:
                        if self.burst and await self._burst_done():
                            self.begin_drain("burst: nothing left to run")
                        next_poll = time.monotonic() + idle
                        idle = min(idle * 2, IDLE_POLL_MAX)
                self._check_drained()
            except DatabaseDown:
                next_poll = max(next_poll, self.work_db.retry_at)
                await asyncio.sleep(min(1.0, max(0.05, self.work_db.retry_at - time.monotonic())))

    def _capacity(self) -> int:
        if self.state is not State.RUNNING:
            return 0
        return self.dispatcher.capacity(self.live_children())

    def _flush_due(self) -> bool:
        if not (self.pending or self.to_release or self.progress):
            return False
        return (
            len(self.pending) >= FLUSH_BATCH
            or time.monotonic() - self.pending_since >= FLUSH_SECONDS
            or self.state is not State.RUNNING
        )

    def live_children(self) -> list[Child]:
        return [
            c
            for c in self.children.values()
            if c.kill is None
            and c.exit_status is None
            and c.writer is not None
            and not self.slots.read(c.slot).drain
        ]

    async def _claim(self) -> int:
        children = self.live_children()
        want = self.dispatcher.capacity(children)
        if want <= 0:
            return 0
        jobs = await self.work_db.run(
            lambda conn: claim_async(
                conn,
                holder=self.holder,
                types=self.node.types,
                queues=self.node.queues,
                limit=want,
                lease_seconds=self.config.lease_seconds,
            )
        )
        if not jobs:
            return 0
        if self.state is not State.RUNNING:  # a drain began while we waited: give them back
            self._note_waiting()
            self.to_release.extend((j.id, j.attempt) for j in jobs)
            return 0
        deals, leftovers = self.dispatcher.assign(jobs, self.live_children())
        if leftovers:
            self._note_waiting()
        self.to_release.extend((j.id, j.attempt) for j in leftovers)
        for child, batch in deals:
            for job in batch:
                child.assigned[job.id] = job
            self._send(
                child,
                (protocol.JOBS, [(j.id, j.attempt, j.type, j.payload, j.timeout) for j in batch]),
            )
        return len(jobs)

    async def _flush(self) -> None:
        """Write what is waiting: outcomes, releases, progress. Kept on failure, retried."""
        if self.pending:
            batch = self.pending
            self.pending = []
            try:
                recorded = await self.work_db.run(
                    lambda conn: record_async(conn, self.node.name, batch, self.config)
                )
            except BaseException:
                self.pending = batch + self.pending
                raise
            if any(r.outcome != "succeeded" for r in batch):
                self.work_hint = True  # a retry may be ready at once
            if recorded.late:
                self.late_results += recorded.late
                log.warning(
                    "late results dropped: their attempts had been replaced",
                    extra=self._fields(late=recorded.late),
                )
        if self.to_release:
            releases, self.to_release = self.to_release, []
            try:
                await self.work_db.run(lambda conn: release_async(conn, releases))
            except BaseException:
                self.to_release = releases + self.to_release
                raise
            self.work_hint = True
        if self.progress:
            reports, self.progress = self.progress, {}
            params = {
                "ids": [k[0] for k in reports],
                "attempts": [k[1] for k in reports],
                "fractions": [v[0] for v in reports.values()],
                "messages": [v[1] for v in reports.values()],
            }
            await self.work_db.run(lambda conn: conn.execute(sql("save_progress"), params))

    async def _burst_done(self) -> bool:
        if any(c.assigned for c in self.children.values()) or self.pending:
            return False
        return await self.work_db.run(self._remaining_is_zero)

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
        """Once draining and every child is gone and everything is written, stop."""
        if self.state is not State.DRAINING or self.children:
            return
        if self.pending or self.to_release or self.progress:
            deadline = (self.grace_deadline or 0) + SHUTDOWN_FLUSH_SECONDS
            if time.monotonic() < deadline:
                self.waker.wake()
                return
            log.error(
                "could not write every outcome before exiting; leases will requeue those jobs",
                extra=self._fields(unwritten=len(self.pending)),
            )
            self.exit_code = 1
        self.state = State.STOPPED
        self.stopped.set()

    # -- cancellation, from the maintenance loop --

    def cancel_running(self, job_id: int, attempt: int) -> None:
        """Stop a running job someone cancelled: cooperative flag first, then kill the child."""
        for child in self.children.values():
            job = child.assigned.get(job_id)
            if job is None or job.attempt != attempt or child.kill is not None:
                continue
            if self.slots.set_cancel(child.slot, job_id):
                self.kill_child(child, "cancelled", "cancelled while running", job, final=True)
            return

    def busy(self) -> int:
        return sum(1 for c in self.children.values() if self.slots.read(c.slot).job_id)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
