"""The worker pool: forking children, watching them, killing them, reaping them, settling the
jobs a dead child held, and handing claimed jobs out. A part the supervisor holds
(supervisor.py); what it says to its children is in child_talk.py, what it decides in
decisions.py (pure functions), how it stops cancelled jobs in cancels.py and when it may
respawn in crash_loop.py. It reports to its owner through `on_change` (something the
drain may be waiting for happened) and `on_other_exit` (a reaped process that is not a
worker)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobfleet import processes
from jobfleet.jobs import FOR_CHILD, ClaimedJob
from jobfleet.log import get_logger
from jobfleet.settings import Settings
from jobfleet.supervisor.cadence import until_next
from jobfleet.supervisor.cancels import Cancels
from jobfleet.supervisor.child_talk import ChildTalk
from jobfleet.supervisor.children import Child, KillPlan, describe_exit, fork_child
from jobfleet.supervisor.crash_loop import CrashLoop
from jobfleet.supervisor.decisions import death_expected, kill_verdict, log_level
from jobfleet.supervisor.dispatch import Dispatcher, beside_room, deal_out
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.settlement import settle
from jobfleet.supervisor.sight import child_facts, running_counts
from jobfleet.supervisor.tally import Tally
from jobfleet.supervisor.waker import Waker
from jobfleet.worker import protocol
from jobfleet.worker.loop import ChildConfig
from jobfleet.worker.slots import SlotTable

log = get_logger("jobfleet.supervisor")

TICK_SECONDS = 0.1
# The watch's pace while no child holds a job (a hand-out brings the first tick at once): at
# TICK_SECONDS an idle node's watch was a fifth of its CPU, ten looks a second at children
# with no job to time out. On the idle loops' grid (cadence.py), with the metrics'.
IDLE_TICK_SECONDS = 1.0
# A watch round this late means the supervisor itself was stopped or starved.
STALL_SECONDS = 1.0
# A dead child's socket is read to its end before its jobs are settled; not forever.
LAST_WORDS_SECONDS = 1.0


class WorkerPool:
    def __init__(
        self,
        node: Node,
        config: Settings,
        *,
        workers: int,
        database_url: str,
        holder: str,
        outbox: Outbox,
        tally: Tally,
        waker: Waker,
        on_change: Callable[[], None],
        on_other_exit: Callable[[int, int], None],
    ) -> None:
        self.node = node
        self.config = config
        self.desired = workers
        self.database_url = database_url  # a transactional handler's worker connects to it
        self.holder = holder  # this run's lease holder: a transactional worker fences on it
        # Async and threaded types: their concurrency, the room a child has for each.
        self.beside_limits = {t: s.concurrency for t, s in node.handlers.items() if s.concurrent}
        self.slots = SlotTable(max(64, 4 * workers), entries=sum(self.beside_limits.values()))
        self.free_slots = list(range(self.slots.size))
        self.children: dict[int, Child] = {}
        self.dispatcher = Dispatcher()
        self.outbox = outbox
        self.tally = tally
        self.waker = waker  # the lanes: room in the children, outcomes to write
        self.talk = ChildTalk(
            node.name, self.slots, self.dispatcher, outbox, tally, waker, self._garbled
        )
        self.on_change = on_change
        self.on_other_exit = on_other_exit
        self.accepting = True  # False once draining: no new children, no new jobs
        self.grace_deadline: float | None = None
        self.crash_loop = CrashLoop(node.name)
        self.stall_ended = 0.0  # when the supervisor last came back from a pause
        self.handed_out = asyncio.Event()  # jobs went to the children (the watch's pace)
        self.cancels = Cancels(self.children, self.slots, self.talk, config, self._stop_cancelled)

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"node": self.node.name, **extra}

    def _garbled(self, child: Child, what: str) -> None:
        """A child sent a message that cannot be read: kill it, recording the jobs it runs."""
        if child.kill is None and child.exit_status is None:
            reason = f"worker sent a message the supervisor cannot read ({what})"
            self.kill_child(child, "crashed", reason, None)

    def drain(self, grace_deadline: float) -> None:
        """No new children or jobs; ask every child to leave once its jobs are done, and
        kill what is still here after `grace_deadline`."""
        self.accepting = False
        self.grace_deadline = grace_deadline
        for child in self.children.values():
            self._ask_to_leave(child)

    def kill_all(self) -> None:
        for child in self.children.values():
            child.signal(signal.SIGKILL)

    def _ask_to_leave(self, child: Child) -> None:
        self.slots.set_drain(child.slot)  # checked between jobs
        self.talk.send(child, (protocol.BYE,))  # wakes a child that waits for work

    # -- children: spawn, watch, reap, settle --

    def manage_children(self) -> None:
        """Converge the number of children to the desired count."""
        if not self.accepting:
            return
        alive = self.staying_children()
        if len(alive) > self.desired:
            for child in sorted(alive, key=lambda c: c.holding)[: len(alive) - self.desired]:
                self._ask_to_leave(child)
            return
        missing = self.desired - len(alive)
        now = time.monotonic()
        while missing > 0 and self.crash_loop.may_spawn(now) and self.free_slots:
            self.spawn()
            missing -= 1
            self.crash_loop.spawned(now, self.desired)

    def spawn(self) -> None:
        slot = self.free_slots.pop(0)
        config = ChildConfig(
            index=slot,
            node=self.node.name,
            holder=self.holder,
            heartbeat_seconds=self.config.child_heartbeat_seconds,
            max_result_bytes=self.config.max_result_bytes,
            max_error_bytes=self.config.max_error_bytes,
            max_jobs=self.config.max_jobs_per_child,
            max_rss_bytes=self.config.max_child_rss_mb * 1024 * 1024,
            database_url=self.database_url,
        )
        pid, sock = fork_child(self.slots, slot, self.node.handlers, config)
        child = Child(pid=pid, slot=slot, sock=sock)
        self.children[pid] = child
        child.reader = asyncio.create_task(self.talk.read(child), name=f"child-{pid}")
        log.debug("worker started", extra=self._fields(worker=pid, slot=slot))

    async def watch_loop(self) -> None:
        last = time.monotonic()
        pause = 0.0
        while True:
            now = time.monotonic()
            if now - last - pause > STALL_SECONDS:
                # We were stopped (SIGSTOP, a stalled host) and so were our children: measure
                # their silence from now, not from before the pause.
                self.stall_ended = now
            last = now
            if self.cancels.waiting:
                self.cancels.retry(now)
            self.watch_children()
            self.manage_children()
            self.on_change()
            if self.holds_jobs():
                pause = TICK_SECONDS
                await asyncio.sleep(pause)
                continue
            now = time.monotonic()
            pause = until_next(IDLE_TICK_SECONDS, now)
            if self.accepting and len(self.staying_children()) < self.desired:
                # A respawn waits out its crash-loop backoff (0.2 s and up): not the grid's.
                pause = min(pause, max(TICK_SECONDS, self.crash_loop.spawn_not_before - now))
            self.handed_out.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.handed_out.wait(), pause)

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
            facts = child_facts(
                child,
                self.slots,
                self.node.handlers,
                now=now,
                stall_ended=self.stall_ended,
                kill_grace=self.config.kill_grace_seconds,
            )
            kill = kill_verdict(
                facts,
                silent_after=self.config.child_silent_after,
                grace_deadline=self.grace_deadline,
                grace_seconds=self.config.grace_seconds,
            )
            if kill is not None:
                culprit = child.held(kill.job) if kill.job is not None else None
                v = kill.verdict
                self.kill_child(child, v.outcome, v.reason, culprit, final=v.final)

    def kill_child(
        self,
        child: Child,
        outcome: Any,
        reason: str,
        job: ClaimedJob | None,
        *,
        final: bool = False,
    ) -> None:
        """SIGTERM now, SIGKILL after the kill grace; the job is recorded with `outcome` and
        `reason` once the child is reaped."""
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
            log_level(outcome),
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
        for pid, status in processes.exited_children():
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
        plan = child.kill
        view = self.slots.read(child.slot)
        done = settle(
            child,
            status,
            view,
            self.slots.running_entries(child.slot),
            self.node.handlers,
            wall_now=time.time(),
            monotonic_now=time.monotonic(),
        )
        for job, verdict, result in done.cut_short:
            self.outbox.add_result(result)
            log.log(
                log_level(verdict.outcome),
                "job's worker died" if plan is None else "job's worker stopped",
                extra=self._fields(
                    worker=child.pid,
                    job=job.id,
                    attempt=job.attempt,
                    outcome=verdict.outcome,
                    reason=verdict.reason,
                ),
            )
        for result in done.unreported:
            self.outbox.add_result(result)
        self.outbox.add_releases(done.releases)
        ran_jobs = bool(done.cut_short)
        expected = death_expected(
            said_bye=view.leaving is not None,
            killed=plan is not None,
            held_running_job=ran_jobs,
        )
        if plan is not None:
            self.tally.child_restarts[plan.outcome] += 1
        elif view.leaving is not None:
            self.tally.child_restarts[view.leaving] += 1
        if not expected:
            self.tally.child_crashes += 1
            self.tally.child_restarts["crashed"] += 1
            self.crash_loop.died(time.monotonic())
            if not ran_jobs:
                log.warning(
                    "worker died while idle",
                    extra=self._fields(worker=child.pid, cause=describe_exit(status)),
                )
        self.free_slots.append(child.slot)
        self.waker.wake()
        self.manage_children()
        self.on_change()

    def staying_children(self) -> list[Child]:
        """Children neither dying, dead, nor asked to leave."""
        return [
            c
            for c in self.children.values()
            if c.kill is None and c.exit_status is None and not self.slots.draining(c.slot)
        ]

    def live_children(self) -> list[Child]:
        """Staying children that can be sent work (their socket is open on our side)."""
        return [c for c in self.staying_children() if c.writer is not None]

    def _stop_cancelled(self, child: Child, job: ClaimedJob) -> None:
        self.kill_child(child, "cancelled", "cancelled while running", job, final=True)

    def busy(self) -> tuple[int, int]:
        """Children running at least one job now, and the jobs they run (their main threads'
        and those beside them)."""
        return running_counts(self.children.values(), self.slots)

    def holds_jobs(self) -> bool:
        return any(c.assigned or c.beside for c in self.children.values())

    def held_job_ids(self) -> list[int]:
        return [job_id for c in self.children.values() for job_id in (*c.assigned, *c.beside)]

    # -- handing out work --

    @property
    def main_types(self) -> list[str]:
        """The types the children's main threads run (all but async and threaded ones)."""
        return [t for t in self.node.types if t not in self.beside_limits]

    def room(self) -> int:
        """How many jobs to claim for the children's main threads now (0 when draining)."""
        return self.dispatcher.capacity(self.live_children()) if self.accepting else 0

    def beside_room(self) -> dict[str, int]:
        """How many jobs of each async or threaded type to claim now (none when draining)."""
        if not self.accepting or not self.beside_limits:
            return {}
        return beside_room(self.live_children(), self.beside_limits)

    def hand_out(self, jobs: Sequence[ClaimedJob]) -> int:
        """Deal claimed jobs to the children, a batch message each, and count them; what
        does not fit (or arrives while draining) goes back as releases. Returns how many
        were handed out."""
        if not jobs:
            return 0
        if not self.accepting:  # a drain began while the claim ran: give them back
            self.outbox.add_releases((j.id, j.attempt) for j in jobs)
            return 0
        batches, leftovers = deal_out(
            jobs, self.live_children(), self.dispatcher, self.beside_limits
        )
        for child, batch in batches.items():
            self.talk.send(child, (protocol.JOBS, list(map(FOR_CHILD, batch))))
        # Counted once the children have their jobs: off the path of the first one's start.
        self.outbox.add_releases((j.id, j.attempt) for j in leftovers)
        self.tally.count_started(jobs)
        self.handed_out.set()  # the watch looks at every tick again
        return len(jobs)
