"""Limits per key, the pure parts: the limit key's name, how a node claims a keyed type (the
type's row lock, then the claim in turns, the whole room asked for), and when it pauses one."""

from __future__ import annotations

from collections import Counter

import pytest

from jobfleet.limit_keys import KEY_CHARS_MAX, payload_key
from jobfleet.options import OptionError
from jobfleet.queries import sql
from jobfleet.supervisor.claims import claim_wants, plan_claims
from jobfleet.supervisor.limited import HOLD_POLL_MIN, LimitedTypes
from jobfleet.type_limits import LIMIT_KEY_MAX, check_limit_key, limit_change
from tests.unit.test_type_limits import PARAMS, Pool


def test_a_limit_key_names_a_payload_field_postgresql_can_store() -> None:
    assert check_limit_key("customer_id") == "customer_id"
    assert check_limit_key("x" * LIMIT_KEY_MAX) == "x" * LIMIT_KEY_MAX
    for bad in ("", "x" * (LIMIT_KEY_MAX + 1), "a\x00b", "a\udcffb", 5, None):
        with pytest.raises(OptionError, match="limit_key"):
            check_limit_key(bad)
    assert limit_change("limit_key", "customer") == ("set", "customer")
    assert limit_change("limit_key", "none") == ("set", None)
    assert limit_change("limit_key", "default") == ("default", None)
    assert limit_change("limit_key", None) == ("keep", None)


def test_a_keyed_type_locks_its_row_then_claims_in_turns_for_the_whole_room() -> None:
    pool = Pool(10, {}, ["plain", "charge"])
    limits = LimitedTypes()
    limits.refreshed([("charge", 1, None, None, "customer")])
    claims = plan_claims(PARAMS, pool, Counter(), limits, now=0.0, backing_off=False)
    # max_running holds per key: the room is asked for, not max_running.
    assert dict(claim_wants(claims)) == {"charge": 10, "": 10}
    ((_, statements, limited),) = [c for c in claims if c[0] == "charge"]
    assert limited
    queries = [q for q, _ in statements]
    assert queries == [sql("lock_keyed_type"), sql("claim_keyed"), sql("limit_state")]
    assert statements[2][1]["keyed"] is True


def test_a_keyed_type_that_got_nothing_pauses_until_jobs_end_or_come() -> None:
    limits = LimitedTypes()
    limits.refreshed([("charge", 1, None, None, "customer")])
    state = [(None, 0, None, None, [], 0.0)]
    # Jobs came: no hold, whatever one key's state.
    assert limits.after_claim("charge", 3, state, now=0.0) is None
    assert limits.claimable(0.0) == ["charge"]
    # Nothing came: paused a moment (not counted as a limit's hold: the queue may be empty).
    assert limits.after_claim("charge", 0, state, now=0.0) is None
    assert limits.claimable(0.0) == [] and limits.claimable(HOLD_POLL_MIN) == ["charge"]
    limits.new_work()  # an enqueue may bring a new key: look now
    assert limits.claimable(0.0) == ["charge"]
    limits.after_claim("charge", 0, state, now=0.0)
    limits.jobs_ended()  # a key's job ended: it may have room again
    assert limits.claimable(0.0) == ["charge"]
    # No row: the key or the limits were removed; read them again.
    limits.after_claim("charge", 0, [], now=0.0)
    assert limits.stale


def test_the_enqueuer_keys_a_payload_as_the_database_would_or_leaves_it_to_it() -> None:
    """jobfleet_limit_key's rules for COPY (tests/test_limit_key_rows.py compares the two)."""
    assert payload_key({"c": "acme"}, "c") == "acme"
    assert payload_key({"c": 42}, "c") == payload_key({"c": "42"}, "c") == "42"
    assert payload_key({"c": False}, "c") == "false"
    for no_key in ({"c": None}, {"c": {}}, {"c": [1]}, {"other": 1}, [1], "c", None):
        assert payload_key(no_key, "c") == ""
    assert payload_key({"c": 1.5}, "c") is None  # the database spells a float
    long = payload_key({"c": "x" * (KEY_CHARS_MAX + 1)}, "c")
    assert long is not None and long.startswith("sha256:") and len(long) == 71
    assert payload_key({"c": "x" * KEY_CHARS_MAX}, "c") == "x" * KEY_CHARS_MAX
