"""Checks on what callers pass in, before anything is written (no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobfleet.jobs import AttemptResult
from jobfleet.options import (
    BACKOFF_MAX_SECONDS,
    DELAY_MAX_SECONDS,
    MAX_JSON_DEPTH,
    RUN_AT_MAX,
    RUN_AT_MIN,
    TIMEOUT_MAX_SECONDS,
    OptionError,
    check_name,
    check_options,
    encode_json,
    parse_duration,
)
from jobfleet.worker.execute import execute
from jobfleet.worker.registry import HandlerSpec, handler


def nested(depth: int, leaf: Any = 1) -> Any:
    """`leaf` inside `depth` levels of arrays and objects, alternating."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    "text",
    [
        "\\u0000",  # a backslash, then the five characters u0000: not a NUL
        "C:\\u0000dir\\\\u0000",
        "\\\\u0000",
        'quote " then \\u0000',
        "😀 ünïcode \u2028",
    ],
)
def test_text_that_only_looks_like_a_nul_is_kept(text: str) -> None:
    assert json.loads(encode_json("payload", {text: [text]}, 10_000)) == {text: [text]}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("nul\x00byte", "NUL character"),
        ("\\\x00", "NUL character"),  # a backslash, then a real NUL
        ({"key\x00": 1}, "NUL character"),
        ("\udcff", "lone surrogate \\(\\\\udcff\\)"),
        ({"\ud800": "key"}, "lone surrogate \\(\\\\ud800\\)"),
        (["ok", "x\udfff"], "lone surrogate"),
    ],
)
def test_text_postgresql_cannot_store_is_refused(value: Any, reason: str) -> None:
    with pytest.raises(OptionError, match=f"payload contains a {reason}") as caught:
        encode_json("payload", value, 10_000)
    assert caught.value.option == "payload"


def test_nesting_up_to_the_limit_is_accepted_and_deeper_is_refused() -> None:
    deepest = nested(MAX_JSON_DEPTH)
    assert json.loads(encode_json("payload", deepest, 10_000)) == deepest
    for too_deep in (MAX_JSON_DEPTH + 1, 300, 100_000):
        with pytest.raises(OptionError, match=f"deeper than {MAX_JSON_DEPTH} levels") as caught:
            encode_json("result", nested(too_deep), 10**7)
        assert caught.value.option == "result"


def test_brackets_in_strings_and_wide_documents_do_not_count_as_depth() -> None:
    brackets = "[{" * 500 + '"\\' + "]}" * 500
    assert encode_json("payload", [brackets, {"k": brackets}], 10_000)
    assert encode_json("payload", ["ends in a backslash\\", "[[[" * 30, {'"[': "\\]"}], 10_000)
    # Closing brackets in strings do not hide a document that is too deep.
    decoys = "leaf"
    for _ in range(MAX_JSON_DEPTH + 1):
        decoys = ["]]]}}}", decoys, '\\"]]'] if isinstance(decoys, str) else [decoys, "]]}}"]
    with pytest.raises(OptionError, match="deeper than"):
        encode_json("payload", decoys, 10**6)
    wide = [[{"a": [i]}] for i in range(5000)]
    assert encode_json("payload", wide, 10**6)
    assert encode_json("payload", [nested(MAX_JSON_DEPTH - 1), wide], 10**6)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"delay": 1e12}, "delay"),
        ({"delay": 1e15}, "delay"),
        ({"delay": 1e300}, "delay"),
        ({"delay": 10**400}, "delay"),
        ({"delay": DELAY_MAX_SECONDS + 1}, "delay"),
        ({"run_at": "9999-12-31T23:59:59-05:00"}, "run_at"),  # year 10000 in UTC
        ({"run_at": "9999-06-01T00:00:00Z"}, "run_at"),
        ({"run_at": "0001-01-01T00:00:00+01:00"}, "run_at"),  # year 0 in UTC
        ({"run_at": datetime(1, 6, 1, tzinfo=UTC)}, "run_at"),
        ({"run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))}, "run_at"),
        ({"timeout": 1e300}, "timeout"),
        ({"timeout": TIMEOUT_MAX_SECONDS * 2}, "timeout"),
        ({"backoff": "exponential:1e308"}, "backoff"),
        ({"backoff": f"fixed:{BACKOFF_MAX_SECONDS + 1}"}, "backoff"),
        ({"priority": "9" * 5000}, "priority"),
        ({"max_attempts": -(10**5000)}, "max_attempts"),
        ({"idempotency_key": "a\x00b"}, "idempotency_key"),
        ({"idempotency_key": "order-\udcff"}, "idempotency_key"),
        ({"queue": "default\n"}, "queue"),
    ],
)
def test_options_out_of_range_are_refused_naming_the_option(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(OptionError, match=named) as caught:
        check_options(**options)
    assert caught.value.option == named


def test_the_bounds_themselves_are_accepted() -> None:
    checked = check_options(delay=DELAY_MAX_SECONDS, timeout=TIMEOUT_MAX_SECONDS)
    assert (checked.delay, checked.timeout) == (DELAY_MAX_SECONDS, TIMEOUT_MAX_SECONDS)
    assert check_options(backoff=f"fixed:{BACKOFF_MAX_SECONDS}").backoff_seconds == 604800
    latest = check_options(run_at="9998-12-31T23:59:59.999999+00:00").run_at
    earliest = check_options(run_at="0002-01-01T05:00:00+05:00").run_at
    assert (earliest, latest) == (RUN_AT_MIN, RUN_AT_MAX)
    assert check_options(run_at="2031-05-01T12:00:00+02:00").run_at == datetime(
        2031, 5, 1, 10, tzinfo=UTC
    )


def test_names_are_matched_whole() -> None:
    assert check_name("queue", "a.b:c-d_e") == "a.b:c-d_e"
    for bad in ("default\n", "x\udcff", "nul\x00"):
        with pytest.raises(OptionError, match="queue"):
            check_name("queue", bad)


def test_durations_are_bounded() -> None:
    assert parse_duration("--older-than", "7d") == 7 * 86400
    with pytest.raises(OptionError, match="at most 100 years"):
        parse_duration("--older-than", "99999999999999w")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"timeout": 1e300}, "timeout"),
        ({"backoff": "exponential:1e308"}, "backoff"),
        ({"timeout": float("inf")}, "timeout"),
    ],
)
def test_the_handler_decorator_checks_its_options_alike(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(OptionError, match=named):
        handler("bounded-type", **options)


def test_a_result_nested_too_deeply_fails_the_attempt_as_cannot_be_stored() -> None:
    def deeper(payload: Any) -> Any:
        return [payload]

    spec = HandlerSpec(type="deeper", fn=deeper, takes_context=False)
    ok = execute(
        1,
        1,
        "deeper",
        json.dumps(nested(MAX_JSON_DEPTH - 1)),
        {"deeper": spec},
        max_result_bytes=10**6,
    )
    assert not isinstance(ok, AttemptResult)
    failed = execute(
        1, 1, "deeper", json.dumps(nested(MAX_JSON_DEPTH)), {"deeper": spec}, max_result_bytes=10**6
    )
    assert isinstance(failed, AttemptResult) and failed.outcome == "failed"
    assert failed.error is not None
    assert "cannot be stored" in failed.error and f"deeper than {MAX_JSON_DEPTH}" in failed.error
