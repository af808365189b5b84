"""The child's life: receive batches of jobs, run them, send back the outcomes.

A child is a pure executor: no database, no decisions. It runs in a process forked by the
supervisor and ends when the supervisor goes (its socket closes, or the parent-death signal).
Its main thread runs the jobs of plain handlers one by one, in the order they came. When the
node has async or threaded types (`concurrency`), their jobs run beside it (concurrent.py),
and a reader thread takes the supervisor's messages so that they start while the main thread
is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from jobfleet.jobs import AttemptResult, Success
from jobfleet.processes import die_with_parent
from jobfleet.worker import protocol
from jobfleet.worker.concurrent import ConcurrentJobs, RunLimits
from jobfleet.worker.execute import execute
from jobfleet.worker.hooks import EXIT_START_HOOK_FAILED, start_hooks, stop_hooks
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.slots import SlotTable
from jobfleet.worker.tracing import AttemptTracer, attempt_tracer
from jobfleet.worker.transactional import Transactions

log = logging.getLogger("jobfleet.worker")

# Outcomes of short jobs wait to travel together; a slow job's outcome leaves at once.
FLUSH_AFTER_SECONDS = 0.02
PROGRESS_EVERY_SECONDS = 0.25
# With jobs running beside it, the main thread waits for messages on a queue the reader
# thread fills. It is also woken (a tick) to look for a reason to leave: by a stop request
# (SIGTERM), by a job beside it that completes the child's max_jobs, and by the heartbeat
# thread while the child is over max_rss. An idle child is otherwise never woken: a tick every
# 0.1 s cost each child of an idle node 0.3-0.5 % of a core on a 2-core VM (issue 17, idle
# node < 1 %).
_TICK = ("tick",)
PROGRESS_JOBS_KEPT = 10_000


@dataclass(frozen=True)
class ChildConfig:
    index: int
    node: str  # its supervisor's node name (for the attempt spans and the records)
    # The supervisor run's lease holder (the claims' locked_by): transactional handlers'
    # completions are fenced on it, as the supervisor's own writes are.
    holder: str | None
    heartbeat_seconds: float
    max_result_bytes: int
    max_error_bytes: int
    max_jobs: int  # recycle after this many jobs; 0: never
    max_rss_bytes: int  # recycle above this resident size; 0: never
    database_url: str = ""  # for transactional handlers' connections


class _Stop(Exception):
    pass


class _StartHookFailed(Exception):
    pass


class ChildLoop:
    def __init__(
        self,
        sock: socket.socket,
        slots: SlotTable,
        handlers: Mapping[str, HandlerSpec],
        config: ChildConfig,
    ) -> None:
        self.sock = sock
        self.slots = slots
        self.handlers = handlers
        self.config = config
        self.index = config.index
        self.jobs_done = 0
        self.stop_requested = False
        self._last_progress: dict[int, float] = {}
        self._sending = threading.Lock()
        self.beside: ConcurrentJobs | None = None
        self._beside_types = frozenset(t for t, spec in handlers.items() if spec.concurrent)
        self._inbox: queue.SimpleQueue[Any] | None = None  # the main thread's, with `beside`
        self.tracer: AttemptTracer | None = None  # set after the start hooks, or never
        self._tx_types = frozenset(t for t, spec in handlers.items() if spec.transactional)
        self.transactions = (
            Transactions(config.database_url, config.node, config.holder)
            if self._tx_types
            else None
        )

    def run(self) -> NoReturn:
        code = 0
        try:
            self._prepare_process()
            for hook in start_hooks():
                try:
                    self._call(hook)
                except Exception:
                    log.exception(
                        "a worker start hook failed; this worker is not used",
                        extra={"worker": self.index, "hook": getattr(hook, "__name__", hook)},
                    )
                    raise _StartHookFailed from None
            # Once, after the hooks that may set a tracer provider: None spares every job.
            self.tracer = attempt_tracer(self.config.node, self.handlers)
            if self.beside is not None:
                self.beside.tracer = self.tracer
            for message in self._messages():  # until the supervisor is gone
                if message[0] == protocol.JOBS:
                    self._run_batch(message[1])
                if self.stop_requested or self.slots.draining(self.index):
                    self._leave("drained")
                    break
                recycle = self._recycle_reason()
                if recycle:
                    self._leave(*recycle)
                    break
        except _Stop:
            pass
        except _StartHookFailed:
            code = EXIT_START_HOOK_FAILED
        except SystemExit as exc:  # a handler called sys.exit(): exit as it asked
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 70  # first: logging the failure may fail too
            with contextlib.suppress(BaseException):
                log.exception("worker child failed", extra={"worker": self.index})
        finally:
            if code == 0:
                self._run_stop_hooks()
            os._exit(code)

    def _messages(self) -> Iterator[Any]:
        """The supervisor's messages for the main thread, until its socket closes."""
        if self.beside is None:
            while (message := protocol.recv_frame(self.sock)) is not None:
                yield message
            return
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._inbox = inbox
        self.beside.on_done = self._beside_done
        if self.stop_requested:  # asked before the inbox was there to wake
            inbox.put(_TICK)
        threading.Thread(target=self._read, args=(inbox,), name="reader", daemon=True).start()
        while True:
            message = inbox.get()
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            yield message

    def _read(self, inbox: queue.SimpleQueue[Any]) -> None:
        """The reader thread: jobs of async and threaded types go to run beside the main
        thread at once, the rest to the main thread in their order."""
        assert self.beside is not None
        beside, beside_types = self.beside, self._beside_types
        try:
            while (message := protocol.recv_frame(self.sock)) is not None:
                kind = message[0]
                if kind == protocol.JOBS:
                    mine = []
                    for job in message[1]:
                        if job[2] in beside_types:
                            beside.submit(job)
                        else:
                            mine.append(job)
                    if mine:
                        inbox.put((protocol.JOBS, mine))
                elif kind == protocol.CANCEL:
                    beside.cancel(message[1], message[2])
                else:
                    inbox.put(message)
        except BaseException as exc:  # a frame that cannot be read: the main thread fails
            inbox.put(exc)
        inbox.put(None)

    def _leave(self, reason: str, detail: str | None = None) -> None:
        """Let every job started beside the main thread end, then say goodbye: `reason`
        (one of slots.LEAVING_REASONS) in the slot, `detail` (else the reason) for the
        supervisor's log."""
        if self.beside is not None:
            self.beside.drain()
        self.slots.set_leaving(self.index, reason)
        self._send((protocol.BYE, detail or reason))

    def _run_stop_hooks(self) -> None:
        for hook in stop_hooks():
            try:
                self._call(hook)
            except Exception:
                with contextlib.suppress(BaseException):
                    log.exception(
                        "a worker stop hook failed",
                        extra={"worker": self.index, "hook": getattr(hook, "__name__", hook)},
                    )

    def _call(self, hook: Callable[[], Any]) -> None:
        """A hook, on the event loop of the worker's async handlers if it is `async def`."""
        if not inspect.iscoroutinefunction(hook):
            hook()
        elif self.beside is not None:
            self.beside.run_on_loop(hook())
        else:  # no async handlers here: a loop of its own
            asyncio.run(hook())

    def _prepare_process(self) -> None:
        # Ctrl-C in a terminal signals the whole group; the supervisor decides for us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        for sig in (signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        die_with_parent()
        if os.getppid() == 1:
            raise _Stop
        if self._beside_types:
            self.beside = ConcurrentJobs(
                slots=self.slots,
                index=self.index,
                handlers=self.handlers,
                limits=RunLimits(
                    self.config.max_result_bytes, self.config.max_error_bytes, os.getpid()
                ),
                send=self._send,
                progress=self._progress,
            )
            self.beside.transactions = self.transactions
        self.slots.beat(self.index)
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def _on_term(self, signum: int, frame: Any) -> None:
        # Finish the job in hand, then leave; the supervisor kills us if that takes too long.
        self.stop_requested = True
        if self._inbox is not None:
            # A main thread waiting for messages looks at once (SimpleQueue.put is
            # reentrant: safe here, whatever the main thread was doing with the queue).
            self._inbox.put(_TICK)

    def _beside_done(self) -> None:
        """A job beside the main thread ended (in its thread): wake the main thread to leave
        when it completes max_jobs."""
        assert self._inbox is not None
        if self._jobs_spent():
            self._inbox.put(_TICK)

    def _beat(self) -> None:
        while True:
            self.slots.beat(self.index)
            if self.beside is not None:
                self.beside.check_loop()
            if self._inbox is not None and self._grown():
                # Grown past max_rss (jobs beside the main thread, or its own memory since):
                # the main thread looks between messages only, so wake it to leave.
                self._inbox.put(_TICK)
            time.sleep(self.config.heartbeat_seconds)

    def _run_batch(self, jobs: list[tuple[Any, ...]]) -> None:
        successes: list[Success] = []
        failures: list[AttemptResult] = []
        committed: list[Success] = []  # written by the worker itself (transactional types)
        tx_types = self._tx_types
        last_sent = time.monotonic()
        pid = os.getpid()
        # Bound once per batch, not per job: this loop is the whole cost of a short job.
        index, slots, handlers = self.index, self.slots, self.handlers
        draining, start_job, finish_job = slots.draining, slots.start_job, slots.finish_job
        max_jobs, max_result_bytes = self.config.max_jobs, self.config.max_result_bytes
        max_error_bytes = self.config.max_error_bytes
        progress, cancelled = self._progress, self._cancelled
        monotonic = time.monotonic
        tracer = self.tracer
        span = None
        for job_id, attempt, type_, payload_json, timeout, trace_context in jobs:
            if self.stop_requested or draining(index) or (max_jobs and self.jobs_done >= max_jobs):
                break  # what is left is handed back: the supervisor releases it
            start_job(index, job_id, attempt)
            if tracer is not None:
                span = tracer.start(job_id, attempt, type_, timeout, trace_context)
            raised = None if span is None else span.raised
            written = False
            if type_ in tx_types:
                outcome, written = self._run_transactional(
                    job_id, attempt, type_, payload_json, raised
                )
            else:
                outcome = execute(
                    job_id,
                    attempt,
                    type_,
                    payload_json,
                    handlers,
                    max_result_bytes=max_result_bytes,
                    max_error_bytes=max_error_bytes,
                    progress_sink=progress,
                    cancelled=cancelled,
                    pid=pid,
                    raised=raised,
                )
            if span is not None:
                span.end(outcome, cancelled())
            self.jobs_done += 1
            finish_job(index, self.jobs_done)
            if isinstance(outcome, AttemptResult):
                failures.append(outcome)
            elif written:
                committed.append(outcome)
            else:
                successes.append(outcome)
            now = monotonic()
            if now - last_sent >= FLUSH_AFTER_SECONDS:
                self._send(protocol.done(successes, failures, committed))
                successes, failures, committed, last_sent = [], [], [], now
        if successes or failures or committed:
            self._send(protocol.done(successes, failures, committed))

    def _run_transactional(
        self,
        job_id: int,
        attempt: int,
        type_: str,
        payload_json: str,
        raised: Callable[[BaseException], None] | None,
    ) -> tuple[Success | AttemptResult, bool]:
        assert self.transactions is not None
        return self.transactions.run(
            execute,
            job_id,
            attempt,
            type=type_,
            payload_json=payload_json,
            handlers=self.handlers,
            max_result_bytes=self.config.max_result_bytes,
            max_error_bytes=self.config.max_error_bytes,
            progress_sink=self._progress,
            cancelled=self._cancelled,
            pid=os.getpid(),
            raised=raised,
        )

    def _cancelled(self) -> bool:
        return self.slots.cancelled(self.index)

    def _progress(self, job_id: int, attempt: int, fraction: float, message: str | None) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress.get(job_id, 0.0) < PROGRESS_EVERY_SECONDS:
            return  # throttled: a tight loop reporting progress costs nothing
        if len(self._last_progress) > PROGRESS_JOBS_KEPT:
            self._last_progress.clear()
        self._last_progress[job_id] = now
        self._send((protocol.PROGRESS, job_id, attempt, fraction, message))

    def _send(self, message: Any) -> None:
        frame = protocol.encode(message)
        try:
            # One frame at a time: a handler's own threads report progress too, and frames
            # interleaved on the socket would be garbage to the supervisor.
            with self._sending:
                self.sock.sendall(frame)
        except OSError:
            raise _Stop from None  # the supervisor is gone

    def _recycle_reason(self) -> tuple[str, str] | None:
        return self._jobs_spent() or self._grown()

    def _jobs_spent(self) -> tuple[str, str] | None:
        """Why the child leaves when it has done max_jobs jobs (main thread and beside)."""
        done = self.jobs_done + (self.beside.done if self.beside is not None else 0)
        if self.config.max_jobs and done >= self.config.max_jobs:
            return "max_jobs", f"recycled after {done} jobs"
        return None

    def _grown(self) -> tuple[str, str] | None:
        """Why the child leaves when its resident size is past max_rss."""
        if self.config.max_rss_bytes:
            rss = _rss_bytes()
            if rss > self.config.max_rss_bytes:
                return "max_rss", f"recycled at {rss // (1024 * 1024)} MiB resident"
        return None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
