"""The jobs a worker runs beside its main thread's: those of `async def` handlers on one event
loop (a thread of its own), those of plain handlers with `concurrency=N` on N threads per type.

Each running job holds an entry of the worker's slot (slots.py) from its start until its
outcome is sent, so the supervisor knows at every moment what ran, and what a death cut short.
A job handed to the worker waits here, started by no one, until its type has room: at a death
or a drain it goes back to the queue without spending an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jobfleet.jobs import AttemptResult, Success
from jobfleet.worker import protocol
from jobfleet.worker.execute import cancelled_outcome, execute, execute_async
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.slots import SlotTable
from jobfleet.worker.tracing import AttemptSpan, AttemptTracer
from jobfleet.worker.transactional import Transactions

log = logging.getLogger("jobfleet.worker")

# While async jobs are on the event loop, it notes the time this often; late by this long, an
# async handler blocked it: warned by the heartbeat thread while it lasts, or by the late tick
# once it has ended (between two beats). With no async job it does not tick: it woke an idle
# worker ten times a second for as long as it lived, once it had run one async job.
LOOP_TICK_SECONDS = 0.1
LOOP_BLOCKED_WARN_SECONDS = 1.0


@dataclass(frozen=True)
class RunLimits:
    max_result_bytes: int
    max_error_bytes: int
    pid: int


class ConcurrentJobs:
    def __init__(
        self,
        *,
        slots: SlotTable,
        index: int,
        handlers: Mapping[str, HandlerSpec],
        limits: RunLimits,
        send: Callable[[Any], None],
        progress: Callable[[int, int, float, str | None], None],
    ) -> None:
        self.slots = slots
        self.index = index
        self.handlers = handlers
        self.limits = limits
        self.send = send
        self.progress = progress
        self._lock = threading.Condition()
        self._free = list(range(slots.entries))
        self._entry_of: dict[tuple[int, int], int] = {}  # (job id, attempt) -> entry
        self._cancel_asked: set[tuple[int, int]] = set()
        self.waiting_or_running = 0
        self.done = 0
        self.stopping = False  # draining: what has not started is handed back
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._tasks: dict[tuple[int, int], asyncio.Task[None]] = {}
        self.loop_tick = 0.0  # when the loop last noted the time (while it ticks)
        self._ticking = False  # a tick is due: async jobs are on the loop
        self._ticked_jobs: list[int] = []  # the async jobs on the loop at the last tick
        self._blocked_warned = False
        self.tracer: AttemptTracer | None = None  # set after the start hooks, or never
        self.transactions: Transactions | None = None  # for transactional types
        self.on_done: Callable[[], None] | None = None  # after each job's end is counted

    # -- from the worker's reader --

    def submit(self, job: tuple[Any, ...]) -> None:
        spec = self.handlers[job[2]]
        with self._lock:
            self.waiting_or_running += 1
        if spec.is_async:
            loop = self._event_loop()
            loop.call_soon_threadsafe(self._start_task, job, spec)
        else:
            executor = self._executors.get(spec.type)
            if executor is None:
                executor = self._executors[spec.type] = ThreadPoolExecutor(
                    spec.concurrency, thread_name_prefix=f"jobfleet-{spec.type}"
                )
            executor.submit(self._run_in_thread, job)

    def cancel(self, job_id: int, attempt: int) -> None:
        """Someone cancelled this job: an async one's task is cancelled, a threaded one sees
        `ctx.cancelled()`; one not started yet ends cancelled without running."""
        key = (job_id, attempt)
        with self._lock:
            self._cancel_asked.add(key)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_task, key)

    def drain(self) -> None:
        """Start nothing more, and return once every job started here has ended and its
        outcome is sent; the jobs that never started are handed back."""
        with self._lock:
            self.stopping = True
            self._lock.wait_for(lambda: self.waiting_or_running == 0)

    def running(self) -> int:
        with self._lock:
            return len(self._entry_of)

    # -- running one job --

    def _begin(self, job: tuple[Any, ...]) -> int | None:
        """Take an entry for the job and mark it started; None: hand it back unstarted."""
        with self._lock:
            if self.stopping:
                self._ended_locked()
                return None
            entry = self._free.pop()
            self._entry_of[(job[0], job[1])] = entry
        self.slots.start_entry(self.index, entry, job[0], job[1])
        return entry

    def _end(
        self,
        job: tuple[Any, ...],
        entry: int,
        outcome: Success | AttemptResult,
        committed: bool = False,
    ) -> None:
        """Report the outcome, then free the entry: a death in between leaves the entry
        saying the job ran to its end. `committed`: a transactional handler's success, which
        this worker recorded already."""
        key = (job[0], job[1])
        slots, index = self.slots, self.index
        cancelled = slots.entry_cancelled(index, entry) or key in self._cancel_asked
        if (
            cancelled
            and not committed
            and not (isinstance(outcome, AttemptResult) and outcome.outcome == "cancelled")
        ):
            # Asked to stop, it returned: cancelled all the same, as in the main thread.
            started = _started_us(outcome)
            outcome = cancelled_outcome(job[0], job[1], started, self.handlers.get(job[2]))
        slots.finish_entry(index, entry)
        if isinstance(outcome, AttemptResult):
            self.send((protocol.LANE_DONE, [], [outcome], []))
        elif committed:
            self.send((protocol.LANE_DONE, [], [], [outcome]))
        else:
            self.send((protocol.LANE_DONE, [outcome], [], []))
        slots.clear_entry(index, entry)
        with self._lock:
            del self._entry_of[key]
            self._cancel_asked.discard(key)
            self._free.append(entry)
            self.done += 1
            self._ended_locked()
        if self.on_done is not None:
            self.on_done()

    def _ended_locked(self) -> None:
        self.waiting_or_running -= 1
        if self.waiting_or_running == 0:
            self._lock.notify_all()

    def _cancelled_before_start(self, job: tuple[Any, ...]) -> Success | AttemptResult | None:
        """A job cancelled while it waited here ends cancelled without running; None: run it."""
        if (job[0], job[1]) not in self._cancel_asked:
            return None
        return cancelled_outcome(job[0], job[1], time.time_ns() // 1000, self.handlers.get(job[2]))

    def _span(self, job: tuple[Any, ...]) -> AttemptSpan | None:
        job_id, attempt, type_, _, timeout, trace_context = job
        if self.tracer is None:
            return None
        return self.tracer.start(job_id, attempt, type_, timeout, trace_context)

    def _run_in_thread(self, job: tuple[Any, ...]) -> None:
        entry = self._begin(job)
        if entry is None:
            return
        job_id, attempt, type_, payload_json, *_ = job
        span = self._span(job)
        committed = False
        outcome = self._cancelled_before_start(job)
        if outcome is None:
            run: dict[str, Any] = {
                "type": type_,
                "payload_json": payload_json,
                "handlers": self.handlers,
                "max_result_bytes": self.limits.max_result_bytes,
                "max_error_bytes": self.limits.max_error_bytes,
                "progress_sink": self.progress,
                "cancelled": lambda: self.slots.entry_cancelled(self.index, entry),
                "pid": self.limits.pid,
                "raised": None if span is None else span.raised,
            }
            if self.transactions is not None and self.handlers[type_].transactional:
                outcome, committed = self.transactions.run(execute, job_id, attempt, **run)
            else:
                outcome = execute(job_id, attempt, **run)
        if span is not None:
            span.end(outcome, self.slots.entry_cancelled(self.index, entry))
        self._end(job, entry, outcome, committed)

    # -- the event loop --

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._run_loop, args=(loop,), name="jobfleet-asyncio", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    def run_on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the worker's event loop (a hook) and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._event_loop()).result()

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _tick(self) -> None:
        """On the loop, every LOOP_TICK_SECONDS while async jobs are on it."""
        now = time.monotonic()
        if now - self.loop_tick >= LOOP_BLOCKED_WARN_SECONDS:  # it could not run till now
            self._warn_blocked(now - self.loop_tick)
        self._blocked_warned = False
        self.loop_tick = now
        if not self._tasks:
            self._ticking = False
            return
        self._ticked_jobs = sorted(job_id for job_id, _ in self._tasks)
        asyncio.get_running_loop().call_later(LOOP_TICK_SECONDS, self._tick)

    def _start_task(self, job: tuple[Any, ...], spec: HandlerSpec) -> None:
        gate = self._gates.get(spec.type)
        if gate is None:
            gate = self._gates[spec.type] = asyncio.Semaphore(spec.concurrency)
        key = (job[0], job[1])
        loop = asyncio.get_running_loop()
        self._tasks[key] = loop.create_task(self._run_task(job, gate))
        if not self._ticking:
            self._ticking = True
            self.loop_tick = time.monotonic()
            self._ticked_jobs = [job[0]]
            loop.call_later(LOOP_TICK_SECONDS, self._tick)

    async def _run_task(self, job: tuple[Any, ...], gate: asyncio.Semaphore) -> None:
        key = (job[0], job[1])
        try:
            async with gate:
                entry = self._begin(job)
                if entry is None:
                    return
                job_id, attempt, type_, payload_json, timeout, *_ = job
                spec = self.handlers[type_]
                span = self._span(job)
                outcome = self._cancelled_before_start(job)
                if outcome is None:
                    outcome = await execute_async(
                        job_id,
                        attempt,
                        type_,
                        payload_json,
                        self.handlers,
                        timeout=timeout or spec.timeout,
                        max_result_bytes=self.limits.max_result_bytes,
                        max_error_bytes=self.limits.max_error_bytes,
                        progress_sink=self.progress,
                        cancelled=lambda: key in self._cancel_asked,
                        pid=self.limits.pid,
                        raised=None if span is None else span.raised,
                    )
                if span is not None:
                    span.end(outcome, key in self._cancel_asked)
                self._end(job, entry, outcome)
        finally:
            self._tasks.pop(key, None)

    def _cancel_task(self, key: tuple[int, int]) -> None:
        task = self._tasks.get(key)
        if task is not None and key in self._entry_of:
            task.cancel("jobfleet: the job was cancelled")

    def check_loop(self) -> None:
        """From the heartbeat thread: warn (once a blocking) when an async handler keeps the
        event loop from running, naming the async jobs it holds up."""
        if not self._ticking:
            return
        blocked = time.monotonic() - self.loop_tick
        if blocked >= LOOP_BLOCKED_WARN_SECONDS:
            self._warn_blocked(blocked)

    def _warn_blocked(self, blocked: float) -> None:
        if self._blocked_warned:
            return
        self._blocked_warned = True
        with contextlib.suppress(Exception):
            log.warning(
                "an async handler blocks the worker's event loop (a blocking call in "
                "`async def`? use `await`, or a plain handler with threads)",
                extra={
                    "worker": self.index,
                    "blocked_seconds": round(blocked, 1),
                    "jobs": self._ticked_jobs,
                },
            )


def _started_us(outcome: Success | AttemptResult) -> int:
    if isinstance(outcome, AttemptResult):
        return round(outcome.started_at.timestamp() * 1e6)
    return int(outcome[4])
