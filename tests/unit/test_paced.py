"""jobfleet.polling.paced: looks at a steady pace, ended by a condition, a duration or a
count, and a deadline on the condition that says what was left."""

from __future__ import annotations

import pytest

from jobfleet import polling


def test_it_stops_after_count_looks() -> None:
    assert list(polling.paced(0, count=3)) == [0, 1, 2]


def test_a_condition_already_true_takes_no_look() -> None:
    assert list(polling.paced(0, until=lambda: True)) == []


def test_it_stops_once_the_condition_holds() -> None:
    looks: list[int] = []
    for look in polling.paced(0, until=lambda: len(looks) == 4):
        looks.append(look)
    assert looks == [0, 1, 2, 3]


def test_no_look_once_the_duration_is_over() -> None:
    assert list(polling.paced(0, seconds=0)) == []


def test_a_condition_never_true_ends_in_the_error_saying_what_was_left() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for 3 jobs left"):
        for _ in polling.paced(
            0.01,
            until=lambda: False,
            timeout=0.05,
            what=lambda: "3 jobs left",
            error=AssertionError,
        ):
            pass
