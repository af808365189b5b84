"""The idle loops' shared grid (supervisor/cadence.py)."""

from __future__ import annotations

import pytest

from jobfleet.supervisor.cadence import until_next


def test_the_next_multiple_of_the_period() -> None:
    assert until_next(1.0, 10.25, phase=0.0) == pytest.approx(0.75)
    assert until_next(5.0, 12.0, phase=0.0) == pytest.approx(3.0)
    assert until_next(0.5, 7.1, phase=0.0) == pytest.approx(0.4)


def test_on_the_grid_a_whole_period_not_zero() -> None:
    assert until_next(1.0, 42.0, phase=0.0) == 1.0
    assert until_next(5.0, 0.0, phase=0.0) == 5.0
    assert until_next(5.0, 13.5, phase=3.5) == 5.0


def test_a_phase_moves_the_grid() -> None:
    # Two nodes on one host read the same clock; their phases keep them apart.
    assert until_next(1.0, 10.0, phase=0.25) == pytest.approx(0.25)
    assert until_next(1.0, 10.0, phase=0.75) == pytest.approx(0.75)
    assert until_next(5.0, 10.0, phase=13.0) == pytest.approx(3.0)


def test_loops_whose_periods_divide_each_other_wake_at_the_same_instants() -> None:
    for now, phase in ((3.3, 0.0), (17.9, 41.37), (1234.56, 7.5)):
        every_second = now + until_next(1.0, now, phase)
        every_five = now + until_next(5.0, now, phase)
        # The five-second loop's instant is one of the one-second loop's.
        assert (every_five - every_second) % 1.0 == pytest.approx(0.0, abs=1e-9) or (
            every_five - every_second
        ) % 1.0 == pytest.approx(1.0, abs=1e-9)


def test_a_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        until_next(0.0, 1.0)
