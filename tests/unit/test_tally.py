"""The supervisor's tally by the batch (supervisor/tally.py) counts what counting job by job
would: each value in the bucket bisect_left places it in, each job under its type and queue."""

from __future__ import annotations

import random
from bisect import bisect_left

import pytest

from jobfleet.jobs import ClaimedJob, one_type_queue
from jobfleet.metrics import DURATION_BUCKETS
from jobfleet.supervisor.tally import Tally, add_bucketed


def one_by_one(values: list[float], bounds: list[float]) -> list[int]:
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    return counts


@pytest.mark.parametrize(
    "values",
    [
        [],
        [0.0],
        [-1.0, -0.5],  # a wait measured across clocks can come out below zero
        [1e9, float("inf")],  # above every bound: the last bucket
        list(DURATION_BUCKETS),  # on a bound: that bound's bucket (at most it)
        [b + 1e-9 for b in DURATION_BUCKETS],  # just above: the next one
        [0.0001] * 1000,  # a drain of no-op jobs: all in the first
    ],
)
def test_bucketed_as_one_by_one(values: list[float]) -> None:
    bounds = list(DURATION_BUCKETS)
    counts = [0] * (len(bounds) + 1)
    add_bucketed(counts, list(values), bounds)
    assert counts == one_by_one(values, bounds)


def test_bucketed_adds_to_what_is_counted_already() -> None:
    bounds = [1.0, 2.0]
    counts = [5, 0, 1]
    add_bucketed(counts, [0.5, 1.5, 1.5, 3.0], bounds)
    assert counts == [6, 2, 2]


def test_bucketed_random_values() -> None:
    rng = random.Random(17)
    bounds = list(DURATION_BUCKETS)
    for _ in range(50):
        values = [rng.choice([rng.uniform(-1, 4000), rng.choice(bounds)]) for _ in range(200)]
        counts = [0] * (len(bounds) + 1)
        add_bucketed(counts, list(values), bounds)
        assert counts == one_by_one(values, bounds)


def job(id: int, type: str = "noop", queue: str = "default", waited: float = 0.0) -> ClaimedJob:
    return ClaimedJob(id, type, queue, 0, 1, None, "{}", waited)


def test_one_type_queue() -> None:
    assert one_type_queue([job(1), job(2)]) == ("noop", "default")
    assert one_type_queue([job(1), job(2, type="echo")]) is None
    assert one_type_queue([job(1), job(2, queue="mail")]) is None
    assert one_type_queue([]) is None


@pytest.mark.parametrize(
    "jobs",
    [
        [job(n, waited=n / 10) for n in range(100)],
        [
            job(
                n,
                type="echo" if n % 3 else "noop",
                queue="mail" if n % 2 else "default",
                waited=n / 7,
            )
            for n in range(100)
        ],
    ],
)
def test_count_started_by_batch_as_job_by_job(jobs: list[ClaimedJob]) -> None:
    tally = Tally("node")
    tally.count_started(jobs)
    expected = Tally("node")
    for one in jobs:
        key = (one.type, one.queue)
        expected.started[key] += 1
        expected.observe_wait(key, one.waited)
    assert tally.started == expected.started
    assert {k: (b.counts, pytest.approx(b.total)) for k, b in tally.wait.items()} == {
        k: (b.counts, b.total) for k, b in expected.wait.items()
    }
