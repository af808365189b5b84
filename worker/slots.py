"""Shared memory between the supervisor and its children: one slot per child.

A child writes which job it runs (and since when) and a heartbeat; the supervisor reads them
without a syscall or a message, so it always knows what a child was doing when it died, and
which child is silent. The supervisor writes the drain flag a child checks between jobs.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

# reserved, job_id, attempt, flags (byte 0: drain, byte 1: cancel), started (monotonic),
# heartbeat (monotonic), jobs_done
_LAYOUT = struct.Struct("<qqiBBxxddq")
SLOT_SIZE = 64
assert _LAYOUT.size <= SLOT_SIZE
_JOB = struct.Struct("<qi")  # job_id, attempt at offset 8
_STARTED = struct.Struct("<d")
_COUNT = struct.Struct("<q")
_OFF_JOB, _OFF_DRAIN, _OFF_CANCEL, _OFF_STARTED, _OFF_BEAT, _OFF_DONE = 8, 20, 21, 24, 32, 40


@dataclass(frozen=True)
class SlotView:
    job_id: int  # 0 when idle
    attempt: int
    drain: bool
    cancel: bool
    started: float  # time.monotonic() when the current job started
    heartbeat: float  # time.monotonic() of the last beat
    jobs_done: int


class SlotTable:
    """`size` slots in one anonymous shared mapping, created before the children are forked."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.mem = mmap.mmap(-1, size * SLOT_SIZE)

    # -- child side ------------------------------------------------------------------------

    def start_job(self, index: int, job_id: int, attempt: int) -> None:
        base = index * SLOT_SIZE
        self.mem[base + _OFF_CANCEL] = 0
        _STARTED.pack_into(self.mem, base + _OFF_STARTED, time.monotonic())
        _JOB.pack_into(self.mem, base + _OFF_JOB, job_id, attempt)

    def finish_job(self, index: int, jobs_done: int) -> None:
        base = index * SLOT_SIZE
        _JOB.pack_into(self.mem, base + _OFF_JOB, 0, 0)
        _COUNT.pack_into(self.mem, base + _OFF_DONE, jobs_done)

    def beat(self, index: int) -> None:
        _STARTED.pack_into(self.mem, index * SLOT_SIZE + _OFF_BEAT, time.monotonic())

    def draining(self, index: int) -> bool:
        return bool(self.mem[index * SLOT_SIZE + _OFF_DRAIN])

    def cancelled(self, index: int) -> bool:
        return bool(self.mem[index * SLOT_SIZE + _OFF_CANCEL])

    # -- supervisor side -------------------------------------------------------------------

    def reset(self, index: int) -> None:
        base = index * SLOT_SIZE
        self.mem[base : base + SLOT_SIZE] = bytes(SLOT_SIZE)
        self.beat(index)

    def set_drain(self, index: int) -> None:
        self.mem[index * SLOT_SIZE + _OFF_DRAIN] = 1

    def set_cancel(self, index: int, job_id: int) -> bool:
        """Ask the child to stop `job_id` if that is what it runs; False when it is not."""
        if self.read(index).job_id != job_id:
            return False
        self.mem[index * SLOT_SIZE + _OFF_CANCEL] = 1
        return True

    def read(self, index: int) -> SlotView:
        _, job_id, attempt, drain, cancel, started, beat, done = _LAYOUT.unpack_from(
            self.mem, index * SLOT_SIZE
        )
        return SlotView(job_id, attempt, bool(drain), bool(cancel), started, beat, done)
