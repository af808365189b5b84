"""How many jobs to claim and which child gets which (no database, no children)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.supervisor.dispatch import MAX_BATCH, MAX_CLAIM, Dispatcher, deal_out


@dataclass
class FakeChild:
    held: int = 0
    name: str = field(default="c")

    @property
    def in_flight(self) -> int:
        return self.held


def job(n: int) -> ClaimedJob:
    return ClaimedJob(n, "noop", "default", 0, 1, None, "null")


def successes(seconds: float, n: int) -> list[float]:
    """The run times of `n` successes of `seconds` each, as a DONE message brings them."""
    return [seconds] * n


def test_one_job_each_until_the_first_outcomes_say_how_long_jobs_take() -> None:
    d = Dispatcher()
    assert d.mean_seconds is None and d.batch == 1 and d.per_child == 2
    assert d.capacity([FakeChild(), FakeChild()]) == 4


def test_batches_aim_at_a_fifth_of_a_second_of_work() -> None:
    d = Dispatcher()
    d.observe(successes(0.001, 10), [])
    assert d.mean_seconds == 0.001 and d.batch == 200 and d.per_child == 400
    d = Dispatcher()
    d.observe(successes(1e-7, 10), [])
    assert d.batch == MAX_BATCH


def test_slow_jobs_are_never_prefetched() -> None:
    d = Dispatcher()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    d.observe(
        [],
        [AttemptResult(1, 1, "failed", started_at=start, finished_at=start + timedelta(seconds=3))],
    )
    assert d.batch == 1 and d.per_child == 1


def test_the_mean_is_smoothed() -> None:
    d = Dispatcher()
    d.observe(successes(0.1, 1), [])
    d.observe(successes(0.2, 1), [])
    assert d.mean_seconds is not None and abs(d.mean_seconds - 0.12) < 1e-9


def test_no_claim_until_a_child_is_down_to_its_last_batch() -> None:
    d = Dispatcher()
    d.observe(successes(0.001, 1), [])  # batch 200, 400 per child
    assert d.capacity([FakeChild(held=399), FakeChild(held=250)]) == 0
    assert d.capacity([FakeChild(held=200), FakeChild(held=250)]) == 350
    assert d.capacity([FakeChild(held=0)] * 20) == MAX_CLAIM


def test_jobs_are_dealt_evenly_in_pickup_order_and_the_rest_is_handed_back() -> None:
    d = Dispatcher()  # nothing known: two each
    a, b = FakeChild(held=1, name="a"), FakeChild(name="b")
    deals, left = d.assign([job(n) for n in range(1, 6)], [a, b])
    # The child with the most room first; each gets at most its room.
    assert [(c.name, [j.id for j in batch]) for c, batch in deals] == [("b", [1, 2]), ("a", [3])]
    assert [j.id for j in left] == [4, 5]


def test_a_small_batch_is_spread_over_the_children_not_piled_on_one() -> None:
    d = Dispatcher()
    d.observe(successes(0.001, 1), [])  # room for 400 each
    children = [FakeChild(name=str(n)) for n in range(4)]
    deals, left = d.assign([job(n) for n in range(10)], children)
    assert sorted(len(batch) for _, batch in deals) == [1, 3, 3, 3] and not left


@dataclass(eq=False)
class HoldingChild:
    assigned: dict[int, ClaimedJob] = field(default_factory=dict)
    beside: dict[int, ClaimedJob] = field(default_factory=dict)
    beside_held: Counter[str] = field(default_factory=Counter)

    @property
    def in_flight(self) -> int:
        return len(self.assigned)


def test_every_job_dealt_is_in_its_childs_batch_and_held_once() -> None:
    # Uneven room makes the dealer come back to a child for a second helping.
    d = Dispatcher()
    d.observe(successes(0.001, 10), [])
    busy, idle = HoldingChild(), HoldingChild()
    busy.assigned = {-n: job(-n) for n in range(1, 300)}
    jobs = [job(n) for n in range(1, 501)] + [
        ClaimedJob(1000 + n, "fetch", "default", 0, 1, None, "null") for n in range(30)
    ]
    batches, leftovers = deal_out(jobs, [busy, idle], d, {"fetch": 10})
    dealt = [j.id for batch in batches.values() for j in batch]
    assert sorted(dealt + [j.id for j in leftovers]) == sorted(j.id for j in jobs)
    assert len(dealt) == len(set(dealt))
    for child, batch in batches.items():
        held = {j.id for j in batch}
        assert held == {i for i in child.assigned if i > 0} | set(child.beside)
    assert sum(c.beside_held["fetch"] for c in (busy, idle)) == 30 - len(
        [j for j in leftovers if j.type == "fetch"]
    )


def test_a_round_of_main_jobs_on_a_node_with_types_run_beside_goes_to_the_main_threads() -> None:
    d = Dispatcher()
    d.observe(successes(0.001, 10), [])
    one, two = HoldingChild(), HoldingChild()
    jobs = [job(n) for n in range(1, 101)]
    batches, leftovers = deal_out(jobs, [one, two], d, {"fetch": 10})
    assert leftovers == [] and not one.beside and not two.beside
    assert sorted([*one.assigned, *two.assigned]) == list(range(1, 101))
    assert sorted(j.id for batch in batches.values() for j in batch) == list(range(1, 101))
