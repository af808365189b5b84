"""The supervisor's children: forking them, watching them, killing them, reaping them, and
settling the jobs a dead child held. Mixed into Supervisor (one object, like gunicorn's
arbiter); what the supervisor and its children say to each other is in child_talk.py, the
work loop and signals in fleet.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.log import get_logger
from jobfleet.metrics import Tally
from jobfleet.settings import Settings
from jobfleet.supervisor.child_talk import ChildTalk
from jobfleet.supervisor.children import Child, KillPlan, describe_exit, fork_child
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.waker import Waker
from jobfleet.worker import protocol
from jobfleet.worker.loop import ChildConfig
from jobfleet.worker.slots import SlotTable

if TYPE_CHECKING:
    from jobfleet.supervisor.fleet import State

log = get_logger("jobfleet.supervisor")

TICK_SECONDS = 0.1
# Crash loop: more unexpected deaths than this within the window slows respawning down.
CRASH_WINDOW_SECONDS = 10.0
CRASH_BACKOFF_MAX_SECONDS = 10.0
# A watch round this late means the supervisor itself was stopped or starved.
STALL_SECONDS = 1.0
# A dead child's socket is read to its end before its jobs are settled; not forever.
LAST_WORDS_SECONDS = 1.0


class WorkerPool(ChildTalk):
    node: Node
    config: Settings
    desired: int
    slots: SlotTable
    free_slots: list[int]
    children: dict[int, Child]
    deaths: deque[float]
    spawn_not_before: float
    grace_deadline: float | None
    dispatcher: Dispatcher
    outbox: Outbox
    waker: Waker
    state: State
    tally: Tally
    stall_ended: float

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"node": self.node.name, **extra}

    def _running(self) -> bool:
        raise NotImplementedError

    def _check_drained(self) -> None:
        raise NotImplementedError

    def on_other_exit(self, pid: int, status: int) -> None:
        raise NotImplementedError

    def _ask_to_leave(self, child: Child) -> None:
        self.slots.set_drain(child.slot)  # checked between jobs
        self._send(child, (protocol.BYE,))  # wakes a child that waits for work

    # -- children: spawn, watch, reap, settle --

    def manage_children(self) -> None:
        """Converge the number of children to the desired count."""
        if not self._running():
            return
        alive = self.staying_children()
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
            max_error_bytes=self.config.max_error_bytes,
            max_jobs=self.config.max_jobs_per_child,
            max_rss_bytes=self.config.max_child_rss_mb * 1024 * 1024,
        )
        pid, sock = fork_child(self.slots, slot, self.node.handlers, config)
        child = Child(pid=pid, slot=slot, sock=sock)
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
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last > STALL_SECONDS:
                # We were stopped (SIGSTOP, a stalled host) and so were our children: measure
                # their silence from now, not from before the pause.
                self.stall_ended = now
            last = now
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
            silent = now - max(view.heartbeat, self.stall_ended)
            if silent > self.config.child_silent_after:
                self.kill_child(
                    child,
                    "crashed",
                    f"worker stopped responding: no heartbeat for {silent:.1f} s",
                    job,
                )
            elif (
                job is not None and (limit := self._timeout_of(job)) and now - view.started > limit
            ):
                self.kill_child(child, "timed_out", f"timeout after {limit:g} s", job)
            elif self.grace_deadline is not None and now > self.grace_deadline:
                # Busy or not: a child still here after the grace period is made to go.
                self.kill_child(
                    child,
                    "crashed",
                    "killed at shutdown: still running after the "
                    f"{self.config.grace_seconds:g} s grace period",
                    job,
                )

    def _timeout_of(self, job: ClaimedJob) -> float | None:
        """The job's own timeout, else its handler's (for jobs enqueued before any node
        published the type's defaults)."""
        if job.timeout:
            return job.timeout
        spec = self.node.handlers.get(job.type)
        return spec.timeout if spec else None

    def kill_child(
        self,
        child: Child,
        outcome: Any,
        reason: str,
        job: ClaimedJob | None,
        *,
        final: bool = False,
    ) -> None:
        view = self.slots.read(child.slot)
        started = time.time() - (time.monotonic() - view.started) if view.job_id else time.time()
        child.kill = KillPlan(
            outcome,
            reason,
            job,
            time.monotonic() + self.config.kill_grace_seconds,
            final=final,
            job_started=started,
        )
        log.log(
            _level(outcome),
            "stopping worker",
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
                child.exit_status = status
                asyncio.get_running_loop().create_task(self._settle(child))
            else:
                self.on_other_exit(pid, status)

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
                # A worker that left cleanly when asked needs no "(exit code 0)" on the record.
                clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
                reason = plan.reason if clean else f"{plan.reason} ({cause})"
                outcome, final = plan.outcome, plan.final
            else:
                outcome, reason, final = "crashed", f"worker {cause}", False
            # The slot says when the job started (on the shared monotonic clock).
            started = (
                time.time() - (time.monotonic() - view.started)
                if view.job_id == running.id
                else (plan.job_started if plan is not None else time.time())
            )
            self.outbox.add_result(
                self._lost_job_result(running, child.pid, outcome, reason, final, started)
            )
            log.log(
                _level(outcome),
                "job's worker died" if plan is None else "job's worker stopped",
                extra=self._fields(
                    worker=child.pid,
                    job=running.id,
                    attempt=running.attempt,
                    outcome=outcome,
                    reason=reason,
                ),
            )
        # Jobs it held but had not started (or finished without reporting): run them again.
        self.outbox.add_releases((j.id, j.attempt) for j in child.assigned.values())
        child.assigned.clear()
        expected = child.bye is not None or (plan is not None and running is not None)
        if plan is not None:
            self.tally.child_restarts[plan.outcome] += 1
        elif child.bye is not None:
            self.tally.child_restarts[child.bye] += 1
        if not expected:
            self.tally.child_crashes += 1
            self.tally.child_restarts["crashed"] += 1
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
        self, job: ClaimedJob, pid: int, outcome: Any, reason: str, final: bool, started: float
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
            started_at=datetime.fromtimestamp(started, UTC),
        )

    def staying_children(self) -> list[Child]:
        """Children neither dying, dead, nor asked to leave."""
        return [
            c
            for c in self.children.values()
            if c.kill is None and c.exit_status is None and not self.slots.read(c.slot).drain
        ]

    def live_children(self) -> list[Child]:
        """Staying children that can be sent work (their socket is open on our side)."""
        return [c for c in self.staying_children() if c.writer is not None]

    def cancel_running(self, job_id: int, attempt: int | None = None) -> None:
        """Stop a running job someone cancelled, if one of our children runs it: set its
        cooperative flag, and kill the child after the kill grace unless the job returns."""
        for child in self.children.values():
            job = child.assigned.get(job_id)
            if job is None or (attempt is not None and job.attempt != attempt):
                continue
            if child.kill is None and self.slots.set_cancel(child.slot, job_id):
                self.kill_child(child, "cancelled", "cancelled while running", job, final=True)
            return

    def busy(self) -> int:
        return sum(1 for c in self.children.values() if self.slots.read(c.slot).job_id)


def _level(outcome: Any) -> int:
    """A cancel is someone's request, logged as news; a death or a kill is a warning."""
    return logging.INFO if outcome == "cancelled" else logging.WARNING
