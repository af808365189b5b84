"""What the adding statements' rows say: `enqueue` (a call of jobfleet_enqueue) always returns
one row, holding NULL when the idempotency key was taken; `enqueue_unique` returns no row when
its key is held. Both mean "added none" to the caller."""

from __future__ import annotations

from jobfleet.enqueue import added_id


def test_a_row_with_an_id_is_the_new_job() -> None:
    assert added_id((42,)) == 42


def test_a_row_holding_null_and_no_row_both_mean_nothing_was_added() -> None:
    assert added_id((None,)) is None
    assert added_id(None) is None
