"""Which claims a node makes in a round, for how many jobs each, and what they brought.

One claim for the unlimited types the workers' main threads run (""), one for each async or
threaded type apart, so that none waits behind another's backlog, and one for each limited
type not held back (claim_limited, followed by a read of the type's limits: limited.py decides
from it whether to hold the type back). All of a round's claims go in one pipeline, one
transaction (lanes.py runs them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple, Protocol

from jobfleet.jobs import ClaimedJob
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.limited import LimitedTypes
from jobfleet.supervisor.store import (
    Statement,
    claim_limited_statements,
    claim_statement,
    claimed_in_turns,
    claimed_jobs,
)
from jobfleet.supervisor.tally import Tally

# A claim: what it claims for ("" the main threads' unlimited types, else a type), its
# statements, and whether the type is limited.
Claim = tuple[str, list[Statement], bool]


class ClaimParams(NamedTuple):
    holder: str  # this run's lease holder (locked_by)
    queues: Sequence[str] | None
    lease_seconds: float


class Room(Protocol):
    """What the worker pool says of its room (pool.py)."""

    @property
    def main_types(self) -> list[str]: ...

    @property
    def beside_limits(self) -> dict[str, int]: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    def room(self) -> int: ...

    def beside_room(self) -> dict[str, int]: ...


def plan_claims(
    params: ClaimParams,
    pool: Room,
    claiming: Counter[str],
    limits: LimitedTypes,
    now: float,
    backing_off: bool,
    dry: Collection[str] = (),
    main_first: bool = False,
) -> list[Claim]:
    """The claims for the room the children have now, less what claims in flight will bring.
    `backing_off`: the node's idle backoff is not over; only held types that came due are
    claimed then. `dry`: unlimited claims ("" or an async or threaded type) left out this
    round (DryClaims). `main_first`: the node has not claimed for its main threads yet; a
    round with that claim leaves the async and threaded types' claims to the next round (the
    other lane's, at once). A claim for a type with nothing ready reads the whole backlog to
    find that out (see DRY_FIRST_SECONDS): in one pipeline with the main claim, the node's
    first jobs waited for it (280 ms at 1M queued, fresh, for the example handlers'
    `async_sleep`)."""
    limited = limits.claimable(now)
    if backing_off and not (limited and limits.next_release() is not None):
        return []
    beside = pool.beside_room()
    room = (
        pool.room()
        - claiming[""]
        - sum(claiming[t] for t in limits.types if t not in pool.beside_limits)
    )
    claims: list[Claim] = []
    for type in limited:
        free = beside.get(type, 0) if type in pool.beside_limits else room
        want = limits.want(type, free) if free > 0 else 0
        # A second claim while one is in flight only for a whole batch, as for the unlimited
        # types: it waits for the first's row lock in the database, and takes its turn the
        # moment the first commits instead of a round trip later.
        if want > 0 and not (claiming[type] and want < pool.dispatcher.batch):
            statements = claim_limited_statements(
                holder=params.holder,
                type=type,
                queues=params.queues,
                limit=want,
                lease_seconds=params.lease_seconds,
                keyed=limits.keyed(type),
            )
            claims.append((type, statements, True))
    if backing_off:
        return claims
    main_types = [t for t in pool.main_types if t not in limits.types]
    if main_types:
        # The main threads' room less what the busy limited main types ask for: their jobs
        # are dealt first, and what does not fit goes back.
        want = room - sum(
            w for t, w in claim_wants(claims) if t in limits.busy and t not in pool.beside_limits
        )
        if want > 0 and not (claiming[""] and want < pool.dispatcher.batch) and "" not in dry:
            claims.append(("", [_claim(params, main_types, want)], False))
            if main_first:
                return claims
    for type, free in beside.items():
        if not claiming[type] and type not in limits.types and type not in dry:
            claims.append((type, [_claim(params, [type], free)], False))
    return claims


def _claim(params: ClaimParams, types: list[str], want: int) -> Statement:
    return claim_statement(
        holder=params.holder,
        types=types,
        queues=params.queues,
        limit=want,
        lease_seconds=params.lease_seconds,
    )


def claim_wants(claims: Sequence[Claim]) -> list[tuple[str, int]]:
    # The claim is the first statement, or the second after a keyed type's lock.
    return [
        (key, int(next(p["limit"] for _, p in statements if "limit" in p)))
        for key, statements, _ in claims
    ]


def pipeline_order(claims: Sequence[Claim]) -> list[Claim]:
    """Unlimited claims first: a limited type's row stays locked from its claim to the commit,
    so the fewer statements after it, the shorter other nodes wait for it. (The limited ones
    keep their order by name: every claimer locks the rows in that order.)"""
    return [c for c in claims if not c[2]] + [c for c in claims if c[2]]


def claimed_by(
    ordered: Sequence[Claim],
    rows: Sequence[Sequence[Any]],
    limits: LimitedTypes,
    tally: Tally,
    now: float,
) -> list[ClaimedJob]:
    """The jobs the claims brought (the limited types' first: what does not fit in the
    children is released, and releasing unlimited work costs no limit anything), holding back
    the limited types whose limits are now full."""
    limited_jobs: list[ClaimedJob] = []
    other_jobs: list[ClaimedJob] = []
    position = 0
    for key, group, is_limited in ordered:
        # A limited claim's rows are its next to last statement's (claim_limited_statements);
        # a keyed one (three statements) brings them with their turns.
        found_rows = rows[position + max(0, len(group) - 2)]
        claimed = claimed_in_turns(found_rows) if len(group) == 3 else claimed_jobs(found_rows)
        if is_limited:
            limited_jobs.extend(claimed)
            found = limits.after_claim(key, len(claimed), rows[position + len(group) - 1], now)
            if found is not None:
                tally.limit_holds[(key, found.limit)] += 1
        else:
            other_jobs.extend(claimed)
        position += len(group)
    return limited_jobs + other_jobs if limited_jobs else other_jobs


def unlimited_counts(ordered: Sequence[Claim], rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """How many jobs each unlimited claim of a round brought (one statement each)."""
    counts: dict[str, int] = {}
    position = 0
    for key, group, is_limited in ordered:
        if not is_limited:
            counts[key] = len(rows[position])
        position += len(group)
    return counts


# An empty claim is not free: jobs_ready is ordered by priority, run_at, id, not by type, so a
# claim for a type with nothing ready walks every ready job's entry to find that out (since
# 0020_ready_types.sql on the index entries alone on PostgreSQL 17+, 2.4 ms at 100k ready;
# reading each job's row before that, and on earlier versions: 15-25 ms). Measured before
# 0020 on a fresh fill of 100k noop jobs drained by a node that also runs an async type (the
# example handlers): that type's claim, made at every round beside the noop claim, came back
# empty ~45 times (10-40 ms a time), about as much database time as the drain itself; with
# 1M queued, ten times more a time.
DRY_FIRST_SECONDS = 0.05
# The longest a claim is left out while the node is busy with other work. Why not the idle
# poll (5 s): a busy node does not hear NOTIFY (its control connection works the hot path), so
# a job of a type left out waits up to this long to be claimed.
DRY_MAX_SECONDS = 1.0


class DryClaims:
    """Unlimited claims that came back empty while the node was busy, left out of the next
    rounds for a while (DRY_FIRST_SECONDS, doubling while they stay empty, at most
    DRY_MAX_SECONDS): an async or threaded type's claim that found nothing while the node
    claimed or ran other jobs, and the main threads' claim ("") that found nothing while
    another claim of its round brought jobs (alone, it keeps the node's own short backoff:
    it is what picks up a stream of plain jobs). A round that brings nothing while the node
    holds nothing ends every pause (the node's idle backoff takes over), and so does anything
    that may have made work ready (`clear`: NOTIFY, requeued jobs, a scheduled job falling
    due)."""

    def __init__(self, first: float = DRY_FIRST_SECONDS, longest: float = DRY_MAX_SECONDS) -> None:
        self.first = first
        self.longest = longest
        self.until: dict[str, float] = {}
        self.pause: dict[str, float] = {}

    def now_dry(self, now: float) -> frozenset[str]:
        return frozenset(key for key, until in self.until.items() if until > now)

    def after_round(
        self, counts: dict[str, int], *, claimed_any: bool, busy: bool, now: float
    ) -> None:
        """A round's unlimited claims brought `counts`; `claimed_any`: some claim of the round
        brought jobs; `busy`: the node still holds or awaits jobs besides."""
        if not claimed_any and not busy:
            self.clear()
            return
        for key, got in counts.items():
            if got:
                self.until.pop(key, None)
                self.pause.pop(key, None)
            elif key or claimed_any:
                last = self.pause.get(key)
                pause = self.first if last is None else min(self.longest, 2 * last)
                self.pause[key] = pause
                self.until[key] = now + pause

    def clear(self) -> None:
        self.until.clear()
        self.pause.clear()


def ran_dry(ordered: Sequence[Claim], rows: Sequence[Sequence[Any]]) -> bool:
    """Whether a round's claims found every ready job they may take taken: each was an
    unlimited claim (one statement) that brought fewer jobs than it asked for. SKIP LOCKED
    passes over rows other claims hold and goes on down the queue, so a short claim left no
    ready job of its types behind as of its snapshot; the next one is announced (NOTIFY), so
    looking again at once finds nothing. A limited claim may be short because its limits
    allowed no more (limited.py decides when to look again): such a round is not dry."""
    if not ordered or any(is_limited for _, _, is_limited in ordered):
        return False
    wants = claim_wants(ordered)
    return all(len(found) < want for found, (_, want) in zip(rows, wants, strict=True))
