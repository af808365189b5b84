"""How many jobs to claim and which child gets which.

Jobs of async and threaded types (`concurrency`) run beside a child's main thread: of each
such type a child holds up to BESIDE_HELD_PER_SLOT times its concurrency (as many waiting as
running), and the type is claimed for once some child has room for half its concurrency, so
that claims come in useful sizes. The rest of this note is about the main thread's jobs.

Short jobs travel in batches sized so a batch takes about TARGET_BATCH_SECONDS to run, and each
child holds two batches (one running, one waiting) so it never waits on the database. (At 0.1 s,
50 ms jobs went one a batch: a claim for every job.) Long
jobs go one at a time, so a job never queues behind a slow one in a busy child while another
child is idle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from math import fsum
from typing import Protocol, TypeVar

from jobfleet.jobs import (
    JOB_ID,
    TYPE,
    AttemptResult,
    ClaimedJob,
)

TARGET_BATCH_SECONDS = 0.2
MAX_BATCH = 1000
MAX_CLAIM = 4000
# Jobs slower than this are never prefetched: a second one would wait behind the first.
PREFETCH_BELOW_SECONDS = 1.0
SMOOTHING = 0.2


BESIDE_HELD_PER_SLOT = 2


class HasAssigned(Protocol):
    @property
    def in_flight(self) -> int: ...


class HoldsBeside(Protocol):
    @property
    def beside_held(self) -> Counter[str]: ...


C = TypeVar("C", bound=HasAssigned)
B = TypeVar("B", bound=HoldsBeside)


def beside_room(children: Sequence[HoldsBeside], limits: Mapping[str, int]) -> dict[str, int]:
    """How many jobs of each async or threaded type (`limits`: its concurrency) to claim now;
    types with no room worth a claim are left out."""
    room: dict[str, int] = {}
    for type, concurrency in limits.items():
        held = BESIDE_HELD_PER_SLOT * concurrency
        free = [max(0, held - c.beside_held[type]) for c in children]
        if any(f >= max(1, concurrency // 2) for f in free):
            room[type] = sum(free)
    return room


def assign_beside(
    jobs: Sequence[ClaimedJob], children: Sequence[B], limits: Mapping[str, int]
) -> tuple[list[tuple[B, list[ClaimedJob]]], list[ClaimedJob]]:
    """Deal jobs of async and threaded types to the children with the most room for each
    type, evenly; return the deals and whatever did not fit (to be released)."""
    by_type: dict[str, list[ClaimedJob]] = {}
    for job in jobs:
        by_type.setdefault(job.type, []).append(job)
    deals: list[tuple[B, list[ClaimedJob]]] = []
    leftovers: list[ClaimedJob] = []
    for type, batch in by_type.items():
        held = BESIDE_HELD_PER_SLOT * limits.get(type, 0)
        dealt, rest = _deal(batch, children, [max(0, held - c.beside_held[type]) for c in children])
        deals.extend(dealt)
        leftovers.extend(rest)
    return deals, leftovers


T = TypeVar("T")


def _deal(
    jobs: Sequence[ClaimedJob], children: Sequence[T], room: list[int]
) -> tuple[list[tuple[T, list[ClaimedJob]]], list[ClaimedJob]]:
    """Deal the jobs (in pickup order) to the children with the most room, spreading them
    evenly: an even share each first, then whatever room is left."""
    free = dict(zip(map(id, children), room, strict=True))
    order = sorted(children, key=lambda c: -free[id(c)])
    deals: list[tuple[T, list[ClaimedJob]]] = []
    position = 0
    share = max(1, -(-len(jobs) // max(1, len(order))))  # an even share, rounded up
    for rounds in (share, max(room, default=0)):
        for child in order:
            take = min(free[id(child)], rounds, len(jobs) - position)
            if take > 0:
                deals.append((child, list(jobs[position : position + take])))
                free[id(child)] -= take
                position += take
    return deals, list(jobs[position:])


class Dispatcher:
    def __init__(self) -> None:
        self.mean_seconds: float | None = None  # smoothed run time of one job

    def observe(self, seconds: Sequence[float], failures: Sequence[AttemptResult]) -> None:
        """Learn how long jobs take from a batch of outcomes: the successes' run times, and
        the failures."""
        count = len(seconds) + len(failures)
        if not count:
            return
        # fsum: a batch of equal run times averages to that run time exactly.
        total = fsum(seconds) + sum(
            (f.finished_at - f.started_at).total_seconds() for f in failures
        )
        mean = max(0.0, total / count)
        if self.mean_seconds is None:
            self.mean_seconds = mean
        else:
            self.mean_seconds += SMOOTHING * (mean - self.mean_seconds)

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
        return _deal(jobs, children, [max(0, limit - c.in_flight) for c in children])


class Holder(HasAssigned, HoldsBeside, Protocol):
    @property
    def assigned(self) -> dict[int, ClaimedJob]: ...

    @property
    def beside(self) -> dict[int, ClaimedJob]: ...


H = TypeVar("H", bound=Holder)


def deal_out(
    jobs: Sequence[ClaimedJob],
    children: Sequence[H],
    dispatcher: Dispatcher,
    beside_limits: Mapping[str, int],
) -> tuple[dict[H, list[ClaimedJob]], list[ClaimedJob]]:
    """Deal a claim's jobs to the children, for their main threads or beside them, note
    what each child now holds, and return each child's batch and what did not fit."""
    # A claim is for the main threads' types or for one type run beside them, so a round's
    # jobs are most often all of the first kind: found by a set of their types (in C) rather
    # than by a look at each job in Python.
    if beside_limits and not beside_limits.keys().isdisjoint(set(map(TYPE, jobs))):
        main = [j for j in jobs if j.type not in beside_limits]
        extra, extra_leftovers = assign_beside(
            [j for j in jobs if j.type in beside_limits], children, beside_limits
        )
    else:
        main, extra, extra_leftovers = list(jobs), [], []
    deals, leftovers = dispatcher.assign(main, children)
    # A child may be dealt to more than once (an even share, then what room is left): one
    # message each, its jobs in the order dealt.
    batches: dict[H, list[ClaimedJob]] = {}
    for child, batch in deals:
        child.assigned.update(zip(map(JOB_ID, batch), batch, strict=True))
        batches.setdefault(child, []).extend(batch)
    for child, batch in extra:
        for job in batch:
            child.beside[job.id] = job
            child.beside_held[job.type] += 1
        batches.setdefault(child, []).extend(batch)
    return batches, [*leftovers, *extra_leftovers]
