"""The soak's steady offer and its flatness verdict (common/bench/soak_load.py), and which
scenarios run by default."""

from __future__ import annotations

import pytest

from jobfleet.bench import ON_REQUEST, SCENARIOS
from jobfleet.bench.runner import chosen
from jobfleet.bench.scaling import workers_per_node
from jobfleet.bench.soak_load import MIX, due, growth


def test_the_mix_shares_add_up_to_the_whole_rate() -> None:
    assert sum(kind.share for kind in MIX) == pytest.approx(1.0)


def test_due_keeps_the_total_to_the_rate_and_catches_up_after_a_late_tick() -> None:
    assert due(3000, 0.5, 0.1, 0) == 150
    assert due(3000, 0.5, 0.1, 150) == 0  # an early tick adds nothing
    assert due(3000, 0.5, 0.35, 150) == 375  # a late one catches up
    assert due(3000, 0.5, 0.2, 400) == 0  # never negative


def test_growth_is_the_last_half_over_the_first_after_the_warm_up() -> None:
    assert growth([99.0, 10, 10, 10, 10]) == 1.0
    assert growth([0.0, 10, 10, 20, 20]) == 2.0
    assert growth([5.0, 10, 12, 11]) == pytest.approx(11 / 10)  # odd: the middle one left out
    assert growth([1.0, 2]) is None  # too few after the warm-up
    assert growth([1.0, 0, 0, 5, 5]) is None  # nothing to compare with


def test_the_soak_runs_only_when_named() -> None:
    assert "soak" in SCENARIOS and "soak" in ON_REQUEST
    assert "soak" not in chosen(None)
    assert chosen(["soak"]) == ["soak"]
    assert chosen(None) == [name for name in SCENARIOS if name != "soak"]


def test_nodes_share_the_workers_at_least_one_each() -> None:
    assert [workers_per_node(2, n) for n in (1, 2, 4, 8)] == [2, 1, 1, 1]
    assert [workers_per_node(8, n) for n in (1, 2, 4, 8)] == [8, 4, 2, 1]
