"""What a node knows of its types' limits, and when to claim a limited type.

The limits are kept by the database, in each claim of a limited type (claim_limited): nothing
here can let one job too many start. This is about not asking in vain: a type whose limit is
full is held back (left out of the node's claims) until it can open again, so a node does not
spin on it, and the other types' claims go on. A full rate opens at a time the claim reports;
a full max_running opens when a job of the type ends: the node hears of its own jobs ending
(its outcomes), and looks again now and then for the others' (HOLD_POLL_MIN doubling up to
HOLD_POLL_MAX). A node that finds every limited type held is not idle: its held types are
work left (a --burst node waits for them; see Lanes._burst_done).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from jobfleet.type_limits import Hold, LimitState, hold

# A full max_running: look again after this long, doubling while it stays full. Jobs of the
# type that end on other nodes are not announced (a NOTIFY per batch of outcomes would cost
# every node's writes); 0.5 s bounds how long a node may leave room unused that another's
# ending made.
HOLD_POLL_MIN, HOLD_POLL_MAX = 0.05, 0.5
# A rate's window opens at a known time: claim a little after it, never before.
RATE_MARGIN_SECONDS = 0.002


class Limits(NamedTuple):
    max_running: int | None
    rate_count: int | None
    # A limit key: the limits hold per key (claim_keyed), not for the type. None: no key.
    limit_key: str | None = None


@dataclass
class LimitedTypes:
    """The node's types that have a limit in force (refreshed from type_limits: at start,
    when told, after a reconnection, and every LIMITS_LOOK_SECONDS of control.py), and which
    of them are held back until when."""

    types: dict[str, Limits] = field(default_factory=dict)
    stale: bool = True  # read them again before the next claim
    held_until: dict[str, float] = field(default_factory=dict)  # monotonic
    poll: dict[str, float] = field(default_factory=dict)  # a full max_running's next wait
    # Types whose last claim brought jobs: the room they ask for is kept from the unlimited
    # types' claim of the same round (an idle limited type keeps nothing from it).
    busy: set[str] = field(default_factory=set)

    def refreshed(self, rows: Sequence[Sequence[Any]]) -> None:
        """The node_limits rows: (type, max_running, rate_count, rate_seconds, limit_key)."""
        self.types = {str(r[0]): Limits(r[1], r[2], *r[4:5]) for r in rows}
        self.stale = False
        self.busy &= self.types.keys()
        for type in list(self.held_until):
            if type not in self.types:
                del self.held_until[type]

    def claimable(self, now: float) -> list[str]:
        """The limited types not held back now, in the order their claims lock them (by
        name, as every claimer does, so two nodes' claims never wait on each other)."""
        return sorted(t for t in self.types if self.held_until.get(t, 0.0) <= now)

    def want(self, type: str, room: int) -> int:
        """No more than the limits could ever allow at once: asking for more would only
        make the claim lock more rows than it may take."""
        limits = self.types[type]
        if limits.limit_key is not None:  # per key: as many keys as there is room for
            return room
        return min(room, *(n for n in (limits.max_running, limits.rate_count) if n is not None))

    def keyed(self, type: str) -> bool:
        return self.types[type].limit_key is not None

    def next_release(self) -> float | None:
        """When the soonest held type may be claimed again (None: none is held)."""
        return min(self.held_until.values(), default=None)

    def holding(self) -> bool:
        return bool(self.held_until)

    def after_claim(
        self, type: str, claimed: int, state_rows: Sequence[Sequence[Any]], now: float
    ) -> Hold | None:
        """A claim of `type` brought `claimed` jobs and left the limit_state rows: hold the
        type back if its limits are full, until they may open; return the hold (None: room
        left)."""
        if not state_rows:  # the limits are gone: read them again
            self.stale = True
            self.held_until.pop(type, None)
            return None
        if claimed:
            self.busy.add(type)
        else:
            self.busy.discard(type)
        # Limits per key: other keys may have room whatever one key's state. A claim that
        # brought nothing looks again after a pause (doubling, as for a full max_running), or
        # at once when jobs end or new ones come (jobs_ended, new_work). Not counted as a hold:
        # the queue may just be empty.
        keyed_hold = Hold("limit_key", None) if self.keyed(type) and not claimed else None
        found = keyed_hold if self.keyed(type) else hold(LimitState(*state_rows[0]))
        if found is None:
            self.held_until.pop(type, None)
            self.poll.pop(type, None)
            return None
        if found.seconds is not None:
            self.held_until[type] = now + found.seconds + RATE_MARGIN_SECONDS
            self.poll.pop(type, None)
        else:
            wait = self.poll.get(type, HOLD_POLL_MIN)
            self.poll[type] = min(HOLD_POLL_MAX, wait * 2)
            self.held_until[type] = now + wait
        return found if found is not keyed_hold else None

    def new_work(self) -> None:
        """Jobs were enqueued or came back: a held keyed type may have a new key ready."""
        for type in list(self.held_until):
            if type in self.types and self.keyed(type):
                del self.held_until[type]
                self.poll[type] = HOLD_POLL_MIN

    def jobs_ended(self) -> None:
        """Jobs of this node ended: a full max_running may have room again; look now. (A
        rate's hold stays: its window opens when it opens.)"""
        for type in self.poll:  # the types held for max_running
            self.held_until.pop(type, None)
            self.poll[type] = HOLD_POLL_MIN
