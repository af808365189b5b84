"""How many jobs to claim and which child gets which.

Short jobs travel in batches sized so a batch takes about TARGET_BATCH_SECONDS to run, and each
child holds two batches (one running, one waiting) so it never waits on the database. (At 0.1 s,
50 ms jobs went one a batch: a claim for every job.) Long
jobs go one at a time, so a job never queues behind a slow one in a busy child while another
child is idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from jobfleet.jobs import SUCCESS_FINISHED, SUCCESS_STARTED, AttemptResult, ClaimedJob, Success

TARGET_BATCH_SECONDS = 0.2
MAX_BATCH = 1000
MAX_CLAIM = 4000
# Jobs slower than this are never prefetched: a second one would wait behind the first.
PREFETCH_BELOW_SECONDS = 1.0
SMOOTHING = 0.2


class HasAssigned(Protocol):
    @property
    def in_flight(self) -> int: ...


C = TypeVar("C", bound=HasAssigned)


class Dispatcher:
    def __init__(self) -> None:
        self.mean_seconds: float | None = None  # smoothed run time of one job

    def observe(self, successes: Sequence[Success], failures: Sequence[AttemptResult]) -> None:
        """Learn how long jobs take from a batch of outcomes."""
        count = len(successes) + len(failures)
        if not count:
            return
        total = sum(s[SUCCESS_FINISHED] - s[SUCCESS_STARTED] for s in successes) / 1e6 + sum(
            (f.finished_at - f.started_at).total_seconds() for f in failures
        )
        seconds = max(0.0, total / count)
        if self.mean_seconds is None:
            self.mean_seconds = seconds
        else:
            self.mean_seconds += SMOOTHING * (seconds - self.mean_seconds)

    @property
    def batch(self) -> int:
        if self.mean_seconds is None:
            return 1  # nothing known yet: one each until the first outcomes come back
        return max(1, min(MAX_BATCH, int(TARGET_BATCH_SECONDS / max(self.mean_seconds, 1e-6))))

    @property
    def per_child(self) -> int:
        """How many jobs one child may hold."""
        if self.mean_seconds is not None and self.mean_seconds >= PREFETCH_BELOW_SECONDS:
            return 1
        return 2 * self.batch

    def capacity(self, children: Sequence[HasAssigned]) -> int:
        """How many jobs to claim now: nothing until some child is down to its last batch."""
        limit = self.per_child
        free = [max(0, limit - c.in_flight) for c in children]
        if not any(f >= max(1, limit - self.batch) for f in free):
            return 0
        return min(MAX_CLAIM, sum(free))

    def assign(
        self, jobs: Sequence[ClaimedJob], children: Sequence[C]
    ) -> tuple[list[tuple[C, list[ClaimedJob]]], list[ClaimedJob]]:
        """Deal the jobs (in pickup order) to the children with the most room, spreading them
        evenly; return the deals and whatever did not fit (to be released)."""
        limit = self.per_child
        room = {id(c): max(0, limit - c.in_flight) for c in children}
        order = sorted(children, key=lambda c: -room[id(c)])
        deals: list[tuple[C, list[ClaimedJob]]] = []
        position = 0
        share = max(1, -(-len(jobs) // max(1, len(order))))  # an even share, rounded up
        for rounds in (share, limit):
            for child in order:
                take = min(room[id(child)], rounds, len(jobs) - position)
                if take > 0:
                    deals.append((child, list(jobs[position : position + take])))
                    room[id(child)] -= take
                    position += take
        return deals, list(jobs[position:])
