"""When a round of claims found the queue dry (supervisor/claims.py, ran_dry): the lanes then
wait for news or the idle poll before looking again, instead of looking at once."""

from __future__ import annotations

from typing import Any

from jobfleet.supervisor.claims import Claim, ran_dry


def _claim(key: str, want: int, limited: bool = False) -> Claim:
    return (key, [("claim", {"limit": want})], limited)


def _rows(n: int) -> list[tuple[Any, ...]]:
    return [(i,) for i in range(n)]


def test_a_round_whose_every_claim_came_back_short_ran_dry() -> None:
    assert ran_dry([_claim("", 2)], [_rows(1)])
    assert ran_dry([_claim("", 2), _claim("io", 8)], [_rows(0), _rows(7)])


def test_one_full_claim_means_more_may_wait() -> None:
    assert not ran_dry([_claim("", 2)], [_rows(2)])
    assert not ran_dry([_claim("", 2), _claim("io", 8)], [_rows(0), _rows(8)])


def test_a_round_with_a_limited_claim_is_left_to_the_limits() -> None:
    limited = ("capped", [("claim_limited", {"limit": 5}), ("limit_state", {})], True)
    assert not ran_dry([_claim("", 2), limited], [_rows(0), _rows(0), _rows(1)])
    assert not ran_dry([], [])
