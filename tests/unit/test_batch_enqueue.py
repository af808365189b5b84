"""jobfleet.batch_enqueue's pure steps: the set statement's arrays, and which jobs take it."""

from __future__ import annotations

from jobfleet.batch_enqueue import is_unique, set_params
from jobfleet.enqueue import one_job


def test_each_column_is_one_array_in_job_order_with_one_number_type_each() -> None:
    jobs = [
        one_job("a", {"n": 1}, {"delay": 5, "timeout": 2, "priority": 3}),
        one_job("b", None, {"delay": 0.5, "backoff": "fixed:1.5"}),
        one_job("c", [1], {"idempotency_key": "k"}),
    ]
    params = set_params(jobs, lock_timeout="1500")
    assert params.pop("lock_timeout") == "1500"
    assert params["types"] == ["a", "b", "c"]
    assert params["payloads"] == ['{"n":1}', "null", "[1]"]
    # an int beside a float would make psycopg send the whole array as the first's type
    assert params["delays"] == [5.0, 0.5, None] and type(params["delays"][0]) is float
    assert params["timeouts"] == [2.0, None, None] and type(params["timeouts"][0]) is float
    assert params["priorities"] == [3, None, None]
    assert params["backoffs"] == [None, "fixed", None]
    assert params["backoff_seconds"] == [None, 1.5, None]
    assert params["idempotency_keys"] == [None, None, "k"]
    assert {len(values) for values in params.values()} == {3}
    assert set_params(jobs)["lock_timeout"] is None  # the session's


def test_unique_for_takes_its_own_statement_unless_an_idempotency_key_decides() -> None:
    assert is_unique(one_job("a", None, {"unique_for": 60}))
    assert not is_unique(one_job("a", None, {"unique_for": 60, "idempotency_key": "k"}))
    assert not is_unique(one_job("a", None, {}))
