"""The outbox's books, without a database: what waits, cleaned on the way in."""

from __future__ import annotations

from jobfleet.completion import success_columns
from jobfleet.jobs import AttemptResult
from jobfleet.supervisor.outbox import Outbox


def test_it_says_when_something_first_arrives_and_what_waits() -> None:
    arrivals: list[int] = []
    outbox = Outbox(on_arrival=lambda: arrivals.append(1))
    assert not outbox and outbox.only_successes
    outbox.add_successes([(1, 1, "null", None, 0, 1), (2, 1, "7", 10, 0, 1)])
    outbox.add_success((3, 1, "null", None, 0, 1))
    assert arrivals == [1]  # once, when the empty outbox got something
    assert outbox.only_successes and outbox.waiting == 3
    outbox.add_releases([])
    assert outbox.only_successes  # nothing released: nothing changed
    outbox.add_releases([(4, 2)])
    outbox.add_result(AttemptResult(5, 1, "failed", error="boom"))
    assert not outbox.only_successes and outbox.waiting == 4
    assert outbox.job_ids() == [1, 2, 3, 5]


def test_add_result_and_add_progress_clean_what_they_are_given() -> None:
    outbox = Outbox(max_error_bytes=2048)
    outbox.add_result(AttemptResult(1, 1, "crashed", error="last words \x00\udcff" + "y" * 9000))
    [result] = outbox.results
    assert result.error is not None and "\x00" not in result.error
    assert len(result.error.encode()) <= 2048 and result.error.endswith("y" * 100)
    outbox.add_progress(1, 1, float("nan"), "a\x00b")
    outbox.add_progress(2, 1, "not a number", 17)
    outbox.add_progress(3, 1, 1e308, None)
    assert outbox.progress == {
        (1, 1): (0.0, "a\ufffdb"),
        (2, 1): (0.0, "17"),
        (3, 1): (1.0, None),
    }


def test_batches_the_children_formatted_wait_and_go_back_as_they_came() -> None:
    arrivals: list[int] = []
    outbox = Outbox(on_arrival=lambda: arrivals.append(1))
    first = [(1, 1, "null", 7, 0, 1), (2, 1, '{"a": [1, 2]}', 7, 0, 1)]
    outbox.add_formatted([1, 2], success_columns(first))
    outbox.add_success((3, 1, "null", None, 0, 1))
    outbox.add_formatted([4], success_columns([(4, 2, "4", 7, 0, 1)]))
    assert arrivals == [1] and outbox and outbox.only_successes
    assert outbox.waiting == 4 and outbox.job_ids() == [3, 1, 2, 4]
    # What a flush takes and, when the database is away, puts back.
    taken, outbox.formatted = outbox.formatted, []
    outbox.add_formatted([5], success_columns([(5, 1, "5", 7, 0, 1)]))
    outbox._put_back([], [], [], {}, taken)
    assert outbox.waiting == 5
    assert [ids for ids, _ in outbox.formatted] == [[1, 2], [4], [5]]
