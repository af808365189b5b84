"""The shared slot table: what a child writes, the supervisor reads, flag by flag."""

from __future__ import annotations

import pytest

from jobfleet.worker.slots import LEAVING_REASONS, SlotTable


def test_a_fresh_slot_reads_idle_and_staying() -> None:
    slots = SlotTable(2, entries=1)
    slots.reset(1)
    view = slots.read(1)
    assert (view.job_id, view.drain, view.cancel, view.leaving, view.jobs_done) == (
        0,
        False,
        False,
        None,
        0,
    )


@pytest.mark.parametrize("reason", LEAVING_REASONS)
def test_the_reason_a_child_leaves_reads_back_beside_its_other_flags(reason: str) -> None:
    slots = SlotTable(2)
    slots.reset(0)
    slots.reset(1)
    slots.start_job(0, 42, 3)
    slots.set_drain(0)
    slots.set_leaving(0, reason)
    view = slots.read(0)
    assert view.leaving == reason
    assert (view.job_id, view.attempt, view.drain, view.cancel) == (42, 3, True, False)
    assert slots.read(1).leaving is None  # the neighbour's slot is untouched


def test_a_slot_given_to_a_new_child_forgets_why_the_last_one_left() -> None:
    slots = SlotTable(1)
    slots.reset(0)
    slots.set_leaving(0, "max_rss")
    slots.reset(0)
    assert slots.read(0).leaving is None


def test_a_reason_outside_the_list_is_refused() -> None:
    slots = SlotTable(1)
    with pytest.raises(ValueError):
        slots.set_leaving(0, "bored")
