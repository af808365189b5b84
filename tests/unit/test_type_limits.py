"""Limits per job type, the pure parts: reading the settings, the sliding window as the node
reads it, when a node holds a type back, and how a round's claims share the room."""

from __future__ import annotations

from collections import Counter

import pytest

from jobfleet.options import OptionError
from jobfleet.supervisor.claims import ClaimParams, claim_wants, pipeline_order, plan_claims
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.limited import HOLD_POLL_MAX, HOLD_POLL_MIN, LimitedTypes
from jobfleet.type_limits import (
    Hold,
    LimitState,
    format_rate,
    hold,
    limit_change,
    parse_rate,
    rate_opens_in,
    rate_used,
)


def test_a_rate_reads_as_starts_per_second_minute_or_hour() -> None:
    assert parse_rate("20/s") == (20, 1)
    assert parse_rate("100/m") == (100, 60)
    assert parse_rate("500/h") == (500, 3600)
    assert format_rate(100, 60) == "100/m" and format_rate(None, None) is None
    for bad in ("0/s", "20", "20/d", "-1/s", " 5/s", 5, None, "99999999999/s"):
        with pytest.raises(OptionError, match="rate"):
            parse_rate(bad)


def test_types_set_values_keep_set_none_or_default() -> None:
    assert limit_change("max_running", None) == ("keep", None)
    assert limit_change("max_running", "none") == ("set", None)
    assert limit_change("max_running", "default") == ("default", None)
    assert limit_change("max_running", "5") == ("set", 5)
    assert limit_change("rate", "3/m") == ("set", (3, 60))
    for bad in ("-1", "five", "1.5"):
        with pytest.raises(OptionError, match="max_running"):
            limit_change("max_running", bad)


# The log: (claim time, jobs) pairs, flattened, oldest first.
LOG = [10.0, 5.0, 10.5, 10.0, 10.9, 5.0]


def test_the_window_counts_the_starts_of_the_last_period_only() -> None:
    assert rate_used(LOG, 10.95, 1.0) == 20
    assert rate_used(LOG, 11.0, 1.0) == 15  # (10.0 left: the window is (at - period, at])
    assert rate_used(LOG, 11.6, 1.0) == 5
    assert rate_used([], 5.0, 1.0) == 0


def test_the_window_opens_when_enough_of_its_oldest_starts_leave() -> None:
    assert rate_opens_in(LOG, 10.95, 1.0, 21) == 0.0  # room now
    assert rate_opens_in(LOG, 10.95, 1.0, 20) == pytest.approx(0.05)  # 10.0 leaves at 11.0
    assert rate_opens_in(LOG, 10.95, 1.0, 10) == pytest.approx(0.55)  # then 10.5, at 11.5
    assert rate_opens_in(LOG, 10.95, 1.0, 1) == pytest.approx(0.95)  # the last, at 11.9


def test_a_type_is_held_back_only_while_a_limit_is_full() -> None:
    free = LimitState(3, 2, None, None, [], 0.0)
    assert hold(free) is None
    assert hold(free._replace(running=3)) == Hold("max_running", None)
    assert hold(free._replace(running=5)) == Hold("max_running", None)  # lowered meanwhile
    paced = LimitState(None, 100, 20, 1, LOG, 10.95)
    assert hold(paced) == Hold("rate", pytest.approx(0.05))
    assert hold(paced._replace(rate_count=21)) is None
    # Both full: the rate's known wait first (a claim then still finds max_running full).
    assert hold(paced._replace(max_running=1)) == Hold("rate", pytest.approx(0.05))


def state_row(max_running: int | None, running: int, count: int | None = None) -> list[object]:
    return [max_running, running, count, None if count is None else 1, [], 0.0]


def test_a_full_max_running_is_looked_at_again_ever_less_often_until_a_job_ends() -> None:
    limits = LimitedTypes()
    limits.refreshed([("a", 1, None, None), ("b", None, 5, 1)])
    assert limits.claimable(0.0) == ["a", "b"]
    assert limits.after_claim("a", 1, [state_row(1, 1)], now=100.0) == Hold("max_running", None)
    assert limits.held_until["a"] == 100.0 + HOLD_POLL_MIN
    assert limits.claimable(100.0) == ["b"] and limits.holding()
    waits = []
    for n in range(6):
        limits.after_claim("a", 0, [state_row(1, 1)], now=float(n))
        waits.append(limits.held_until["a"] - n)
    assert waits[0] == 2 * HOLD_POLL_MIN and waits[-1] == HOLD_POLL_MAX
    limits.jobs_ended()  # this node's jobs ended: look now, from the shortest wait again
    assert limits.claimable(0.0) == ["a", "b"]
    assert limits.after_claim("a", 1, [state_row(1, 1)], now=0.0) is not None
    assert limits.held_until["a"] == HOLD_POLL_MIN
    assert limits.after_claim("a", 0, [state_row(1, 0)], now=1.0) is None  # room again
    assert not limits.holding() and limits.next_release() is None


def test_a_full_rate_holds_until_its_window_opens_and_gone_limits_are_read_again() -> None:
    limits = LimitedTypes()
    limits.refreshed([("b", None, 20, 1)])
    state = [None, 0, 20, 1, LOG, 10.95]
    found = limits.after_claim("b", 20, [state], now=500.0)
    assert found == Hold("rate", pytest.approx(0.05))
    assert limits.next_release() == pytest.approx(500.05, abs=0.01)
    limits.jobs_ended()  # ends of jobs do not open a rate
    assert limits.claimable(500.0) == []
    assert limits.after_claim("b", 0, [], now=501.0) is None  # no row: the limits are gone
    assert limits.stale
    assert limits.want("b", 100) == 20  # never more than the rate could ever allow at once


class Pool:
    """The worker pool's room, as plan_claims reads it."""

    def __init__(self, room: int, beside: dict[str, int], types: list[str]) -> None:
        self._room, self._beside = room, beside
        self.beside_limits = {t: 10 for t in beside}
        self.main_types = [t for t in types if t not in beside]
        self.dispatcher = Dispatcher()

    def room(self) -> int:
        return self._room

    def beside_room(self) -> dict[str, int]:
        return dict(self._beside)


PARAMS = ClaimParams("n/1", None, 30.0)


def test_each_limited_type_is_claimed_apart_and_busy_ones_keep_their_room() -> None:
    pool = Pool(10, {"io": 8}, ["plain", "capped", "io", "paced"])
    limits = LimitedTypes()
    limits.refreshed([("capped", 3, None, None), ("paced", None, 50, 1)])
    claims = plan_claims(PARAMS, pool, Counter(), limits, now=0.0, backing_off=False)
    assert [(k, limited) for k, _, limited in claims] == [
        ("capped", True),
        ("paced", True),
        ("", False),
        ("io", False),
    ]
    # Idle limited types keep nothing from the unlimited claim; a busy one keeps its share.
    assert dict(claim_wants(claims)) == {"capped": 3, "paced": 10, "": 10, "io": 8}
    limits.after_claim("capped", 2, [state_row(3, 2)], now=0.0)
    claims = plan_claims(PARAMS, pool, Counter(), limits, now=0.0, backing_off=False)
    assert dict(claim_wants(claims))[""] == 7
    # In the pipeline the limited claims come last, in the order every claimer locks them.
    assert [k for k, _, _ in pipeline_order(claims)] == ["", "io", "capped", "paced"]


def test_during_an_idle_backoff_only_held_types_that_came_due_are_claimed() -> None:
    pool = Pool(10, {}, ["plain", "capped"])
    limits = LimitedTypes()
    limits.refreshed([("capped", 3, None, None)])
    assert plan_claims(PARAMS, pool, Counter(), limits, now=0.0, backing_off=True) == []
    limits.after_claim("capped", 3, [state_row(3, 3)], now=0.0)
    assert plan_claims(PARAMS, pool, Counter(), limits, now=0.0, backing_off=True) == []
    due = plan_claims(PARAMS, pool, Counter(), limits, now=1.0, backing_off=True)
    assert [k for k, _, _ in due] == ["capped"]
    # A claim in flight for the type: another only for a whole batch (here 200 jobs).
    pool.dispatcher.mean_seconds = 0.001
    assert plan_claims(PARAMS, pool, Counter(capped=3), limits, now=1.0, backing_off=True) == []
    pool._room = 1000
    limits.refreshed([("capped", 500, None, None)])
    again = plan_claims(PARAMS, pool, Counter(capped=300), limits, now=1.0, backing_off=True)
    assert claim_wants(again) == [("capped", 500)]


def test_a_nodes_first_round_claims_for_its_main_threads_alone() -> None:
    """The async and threaded types' claims wait for the next round (the other lane's, at
    once): one for a type with nothing ready reads the whole backlog, and the node's first
    jobs would wait for it in the same pipeline."""
    pool = Pool(10, {"io": 8}, ["plain", "io"])
    limits = LimitedTypes()
    first = plan_claims(PARAMS, pool, Counter(), limits, 0.0, False, main_first=True)
    assert dict(claim_wants(first)) == {"": 10}
    # The other lane, while that claim is in flight: the beside claims, now.
    beside = plan_claims(PARAMS, pool, Counter({"": 10}), limits, 0.0, False, main_first=True)
    assert dict(claim_wants(beside)) == {"io": 8}
    # Once the main threads were claimed for, rounds hold every claim again.
    later = plan_claims(PARAMS, pool, Counter(), limits, 0.0, False, main_first=False)
    assert dict(claim_wants(later)) == {"": 10, "io": 8}
    # A node of async types alone claims for them from the first round.
    only_io = Pool(0, {"io": 8}, ["io"])
    assert dict(
        claim_wants(plan_claims(PARAMS, only_io, Counter(), limits, 0.0, False, main_first=True))
    ) == {"io": 8}
