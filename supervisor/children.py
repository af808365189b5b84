"""Forking worker children and describing how they ended."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobfleet.jobs import ClaimedJob, Outcome
from jobfleet.worker.hooks import EXIT_START_HOOK_FAILED
from jobfleet.worker.loop import ChildConfig, ChildLoop
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.slots import SlotTable


@dataclass
class KillPlan:
    """Why the supervisor is killing a child, and what the job it runs is to be recorded as."""

    outcome: Outcome
    reason: str
    job: ClaimedJob | None
    sigkill_at: float
    final: bool = False
    sigkilled: bool = False
    job_started: float = 0.0  # Unix time the job started, as its slot said when we decided


@dataclass(eq=False)
class Child:
    pid: int
    slot: int
    sock: socket.socket
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.Task[None] | None = None
    # Jobs handed to this child for its main thread and not yet reported, in the order it
    # runs them.
    assigned: dict[int, ClaimedJob] = field(default_factory=dict)
    # Jobs of async and threaded types handed to it and not yet reported, and how many of
    # each type; those it was asked to cancel, with when they must have ended (monotonic).
    beside: dict[int, ClaimedJob] = field(default_factory=dict)
    beside_held: Counter[str] = field(default_factory=Counter)
    cancel_by: dict[int, float] = field(default_factory=dict)
    kill: KillPlan | None = None
    reported: int = 0  # outcomes read from it: its slot's jobs_done less this ran unreported
    exit_status: int | None = None
    # Its CPU time when last looked at, and when that was seen to grow (monotonic): a child
    # whose heartbeat thread cannot run (a handler holding the GIL in C code) still works.
    cpu_seconds: float = 0.0
    cpu_grew_at: float = 0.0
    eof: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def in_flight(self) -> int:
        return len(self.assigned)

    @property
    def holding(self) -> int:
        return len(self.assigned) + len(self.beside)

    def held(self, job_id: int) -> ClaimedJob | None:
        """The job, if this child holds it (in its main thread's queue or beside)."""
        job = self.assigned.get(job_id)
        return job if job is not None else self.beside.get(job_id)

    def drop_beside(self, job_id: int) -> ClaimedJob | None:
        """Forget a job run beside the main thread (its outcome came, or it was settled)."""
        job = self.beside.pop(job_id, None)
        if job is not None:
            self.beside_held[job.type] -= 1
            self.cancel_by.pop(job_id, None)
        return job

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


def fork_child(
    slots: SlotTable,
    slot: int,
    handlers: Mapping[str, HandlerSpec],
    config: ChildConfig,
    keep_fds: tuple[int, ...] = (),
) -> tuple[int, socket.socket]:
    """Fork one child running ChildLoop; return its pid and the supervisor's end of its socket."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (parent_end, child_end):
        end.set_inheritable(False)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    slots.reset(slot)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            signal.set_wakeup_fd(-1)  # the supervisor's event loop owns that pipe
            _close_inherited_fds(keep=(0, 1, 2, child_end.fileno(), *keep_fds))
            ChildLoop(child_end, slots, handlers, config).run()
        finally:
            os._exit(70)
    child_end.close()
    parent_end.setblocking(False)
    return pid, parent_end


def _close_inherited_fds(keep: tuple[int, ...]) -> None:
    """Close the supervisor's sockets (database, other children, the loop's pipes) in a child."""
    try:
        fds = sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {sig} ({name})"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == EXIT_START_HOOK_FAILED:
            return f"exit code {code} (its on_worker_start hook failed: see its traceback)"
        return f"exit code {code}"
    return f"ended with wait status {status}"
