"""Shared memory between the supervisor and its children: one slot per child.

A child writes which job it runs (and since when) and a heartbeat; the supervisor reads them
without a syscall or a message, so it always knows what a child was doing when it died, and
which child is silent. The supervisor writes the drain flag a child checks between jobs.

A slot's header holds the job of the child's main thread (one job at a time, the types of
concurrency 1). After it come the slot's entries, one per job the child runs beside it (async
and threaded types): which job, since when, whether it is still running or has finished with
its outcome not yet sent, and its cancel flag. An entry is cleared once its outcome is sent,
so at a child's death an entry tells a job that ran to its end (its attempt spent) from one
that was cut short, and a handed-out job in no entry was never started.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

# reserved, job_id, attempt, flags (byte 0: drain, byte 1: cancel, byte 2: why the child
# leaves on its own), started (monotonic), heartbeat (monotonic), jobs_done
_LAYOUT = struct.Struct("<qqiBBBxddq")
SLOT_SIZE = 64
assert _LAYOUT.size <= SLOT_SIZE
_JOB = struct.Struct("<qi")  # job_id, attempt at offset 8
_STARTED = struct.Struct("<d")
_COUNT = struct.Struct("<q")
_OFF_JOB, _OFF_DRAIN, _OFF_CANCEL, _OFF_LEAVING = 8, 20, 21, 22
_OFF_STARTED, _OFF_BEAT, _OFF_DONE = 24, 32, 40

# Why a child leaves on its own, as it writes it in its slot before it exits: the slot, not
# its goodbye on the socket, tells the supervisor the exit was no crash (a message in the
# socket is lost when the supervisor's own write to the gone child fails first).
LEAVING_REASONS = ("drained", "max_jobs", "max_rss")

# An entry: job_id, attempt, state, cancel, started (monotonic).
_ENTRY = struct.Struct("<qiBBxxd")
ENTRY_SIZE = _ENTRY.size
_E_STATE, _E_CANCEL = 12, 13
RUNNING, FINISHED = 1, 2  # an entry's state; 0: free


@dataclass(frozen=True)
class SlotView:
    job_id: int  # 0 when idle
    attempt: int
    drain: bool
    cancel: bool
    started: float  # time.monotonic() when the current job started
    heartbeat: float  # time.monotonic() of the last beat
    jobs_done: int
    leaving: str | None  # one of LEAVING_REASONS once the child has decided to leave


@dataclass(frozen=True)
class EntryView:
    entry: int
    job_id: int
    attempt: int
    finished: bool  # ran to its end; its outcome was not sent yet
    cancel: bool
    started: float  # time.monotonic() when it started


class SlotTable:
    """`size` slots in one anonymous shared mapping, created before the children are forked;
    each with `entries` places for the jobs a child runs beside its main thread's."""

    def __init__(self, size: int, entries: int = 0) -> None:
        self.size = size
        self.entries = entries
        self.stride = SLOT_SIZE + entries * ENTRY_SIZE
        self.mem = mmap.mmap(-1, size * self.stride)

    # -- child side ------------------------------------------------------------------------

    def start_job(self, index: int, job_id: int, attempt: int) -> None:
        base = index * self.stride
        self.mem[base + _OFF_CANCEL] = 0
        _STARTED.pack_into(self.mem, base + _OFF_STARTED, time.monotonic())
        _JOB.pack_into(self.mem, base + _OFF_JOB, job_id, attempt)

    def finish_job(self, index: int, jobs_done: int) -> None:
        base = index * self.stride
        _JOB.pack_into(self.mem, base + _OFF_JOB, 0, 0)
        _COUNT.pack_into(self.mem, base + _OFF_DONE, jobs_done)

    def _entry_at(self, index: int, entry: int) -> int:
        return index * self.stride + SLOT_SIZE + entry * ENTRY_SIZE

    def start_entry(self, index: int, entry: int, job_id: int, attempt: int) -> None:
        # The job id last: a reader seeing it sees the rest of the entry.
        base = self._entry_at(index, entry)
        _ENTRY.pack_into(self.mem, base, 0, attempt, RUNNING, 0, time.monotonic())
        _COUNT.pack_into(self.mem, base, job_id)

    def finish_entry(self, index: int, entry: int) -> None:
        self.mem[self._entry_at(index, entry) + _E_STATE] = FINISHED

    def clear_entry(self, index: int, entry: int) -> None:
        base = self._entry_at(index, entry)
        self.mem[base : base + ENTRY_SIZE] = bytes(ENTRY_SIZE)

    def entry_cancelled(self, index: int, entry: int) -> bool:
        return bool(self.mem[self._entry_at(index, entry) + _E_CANCEL])

    def beat(self, index: int) -> None:
        _STARTED.pack_into(self.mem, index * self.stride + _OFF_BEAT, time.monotonic())

    def set_leaving(self, index: int, reason: str) -> None:
        self.mem[index * self.stride + _OFF_LEAVING] = LEAVING_REASONS.index(reason) + 1

    def draining(self, index: int) -> bool:
        return bool(self.mem[index * self.stride + _OFF_DRAIN])

    def cancelled(self, index: int) -> bool:
        return bool(self.mem[index * self.stride + _OFF_CANCEL])

    # -- supervisor side -------------------------------------------------------------------

    def reset(self, index: int) -> None:
        base = index * self.stride
        self.mem[base : base + self.stride] = bytes(self.stride)
        self.beat(index)

    def set_drain(self, index: int) -> None:
        self.mem[index * self.stride + _OFF_DRAIN] = 1

    def set_cancel(self, index: int, job_id: int) -> bool:
        """Ask the child to stop `job_id` if that is what it runs; False when it is not."""
        if self.read(index).job_id != job_id:
            return False
        self.mem[index * self.stride + _OFF_CANCEL] = 1
        return True

    def set_entry_cancel(self, index: int, job_id: int, attempt: int) -> bool:
        """Raise the cancel flag of the entry running `job_id`; False when none does."""
        for view in self.running_entries(index):
            if view.job_id == job_id and view.attempt == attempt and not view.finished:
                self.mem[self._entry_at(index, view.entry) + _E_CANCEL] = 1
                return True
        return False

    def running_entries(self, index: int) -> list[EntryView]:
        """The entries in use: jobs running beside the main thread's, or finished unsent."""
        views = []
        for entry in range(self.entries):
            job_id, attempt, state, cancel, started = _ENTRY.unpack_from(
                self.mem, self._entry_at(index, entry)
            )
            if job_id and state:
                views.append(
                    EntryView(entry, job_id, attempt, state == FINISHED, bool(cancel), started)
                )
        return views

    def read(self, index: int) -> SlotView:
        _, job_id, attempt, drain, cancel, leaving, started, beat, done = _LAYOUT.unpack_from(
            self.mem, index * self.stride
        )
        reason = LEAVING_REASONS[leaving - 1] if 0 < leaving <= len(LEAVING_REASONS) else None
        return SlotView(job_id, attempt, bool(drain), bool(cancel), started, beat, done, reason)
