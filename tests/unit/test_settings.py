"""Every numeric setting is finite and bounded; a bad one names the variable, value and rule."""

from __future__ import annotations

import pytest

from jobfleet.errors import ConfigError
from jobfleet.settings import (
    BOUNDS,
    SETTING_RULES,
    _pydantic_model,
    load_settings,
    read_plainly,
    setting_types,
)


def is_int(field: str) -> bool:
    return setting_types()[field] is int


NUMERIC = sorted(
    name for name, kind in setting_types().items() if kind in (int, float, int | None, float | None)
)
FLOATS = sorted(n for n in NUMERIC if setting_types()[n] in (float, float | None))


@pytest.mark.parametrize("field", NUMERIC)
def test_every_numeric_setting_is_bounded_both_ways(field: str) -> None:
    """In BOUNDS (with the reason), or by its own rule(ge=..., le=...)."""
    if field in BOUNDS:
        return
    rules = SETTING_RULES[field]
    assert "ge" in rules or "gt" in rules, field
    assert "le" in rules, field


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_each_bound_is_accepted_and_just_beyond_it_refused(field: str) -> None:
    bound = BOUNDS[field]
    step = 1 if is_int(field) else bound.low / 2 or 1e-6
    for good in (bound.low, bound.high):
        value = int(good) if is_int(field) else good
        assert getattr(load_settings(**{field: value}), field) == value
    for bad in (bound.low - step, bound.high + max(step, 1)):
        value = int(bad) if is_int(field) else bad
        with pytest.raises(ConfigError) as caught:
            load_settings(**{field: value})
        message = str(caught.value)
        assert message.startswith(f"JOBFLEET_{field.upper()}={value!r} is not allowed")
        assert f"from {bound.low:.15g} to {bound.high:.15g} ({bound.why})" in message


@pytest.mark.parametrize("field", FLOATS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_a_float_setting_must_be_finite(field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"JOBFLEET_{field.upper()}='{value}'"):
        load_settings(**{field: value})


def test_the_statement_timeout_never_rounds_to_off() -> None:
    from jobfleet.db import connection_options

    with pytest.raises(ConfigError, match="0 turns the timeout off"):
        load_settings(statement_timeout_seconds=1e-9)
    options = connection_options(load_settings(statement_timeout_seconds=0.001))
    assert "statement_timeout=1 " in options["options"]


# Values of every form: plain ones the quick reader takes, and ones it leaves to pydantic.
SAMPLES = {
    float: [
        "5",
        "0.5",
        "-1",
        "0",
        "1e3",
        "1E-2",
        "86400",
        "86401",
        " 5",
        "5.",
        "+5",
        "1_0",
        "",
        "abc",
        "inf",
        "nan",
        "1e400",
        "0x10",
        7,
        0,
        2.5,
        -0.0,
        True,
        None,
    ],
    int: [
        "5",
        "0",
        "-1",
        "1024",
        "1048576",
        "33554433",
        "5.0",
        " 5",
        "+5",
        "1_0",
        "",
        "x",
        "1e3",
        5,
        0,
        5.0,
        True,
        None,
    ],
}
OTHERS = {
    "database_url": [
        "",
        "  ",
        "postgresql://u@h/db",
        "dbname=x host=/tmp",
        "postgresql://u:p@h:x/d",
        "host='unclosed",
        None,
    ],
    "data_dir": ["/tmp/x", "relative/dir", "", None],
    "node_name": ["a", "n" * 128, "n" * 129, "", "node-1", None],
    "log_level": ["info", "DEBUG", "Warning", "verbose", "", None],
    "log_format": ["json", "text", "JSON", "", None],
}


def samples() -> list[tuple[str, object]]:
    cases = []
    for name, kind in setting_types().items():
        base = next((k for k in (float, int) if kind in (k, k | None)), None)
        values = SAMPLES[base] if base is not None else OTHERS[name]
        cases += [(name, value) for value in values]
    return cases


def pydantic_reading(name: str, value: object) -> object:
    """What the pydantic-settings model makes of the value: the value read, or ConfigError."""
    try:
        return dict(_pydantic_model()(**{name: value}))[name]
    except Exception:
        return ConfigError


@pytest.mark.parametrize(("name", "value"), samples())
def test_the_quick_reader_takes_only_what_pydantic_takes_and_reads_it_alike(
    name: str, value: object
) -> None:
    """read_plainly takes a value as pydantic-settings would (same value, same type) or leaves
    it to pydantic; it never takes one pydantic refuses."""
    plain = read_plainly({}, {name: value})
    expected = pydantic_reading(name, value)
    if plain is not None:
        assert expected is not ConfigError, (name, value)
        assert plain[name] == expected and type(plain[name]) is type(expected), (name, value)
    if isinstance(value, str):  # the same from the environment
        from_env = read_plainly({f"JOBFLEET_{name.upper()}": value}, {})
        assert from_env == plain


def test_a_plain_reading_needs_every_value_plain() -> None:
    assert read_plainly({"JOBFLEET_LEASE_SECONDS": "5", "JOBFLEET_LOG_LEVEL": "debug"}, {}) == {
        "lease_seconds": 5.0,
        "log_level": "DEBUG",
    }
    # One value in a form left to pydantic, or a name in another case: all go to pydantic.
    assert read_plainly({"JOBFLEET_LEASE_SECONDS": "5", "JOBFLEET_GRACE_SECONDS": " 1"}, {}) is None
    assert read_plainly({"jobfleet_lease_seconds": "5"}, {}) is None
    # Variables that are not settings are not its business (they are warned about).
    assert read_plainly({"JOBFLEET_HANDLERS": "x", "OTHER": "y"}, {}) == {}


def test_a_value_left_to_pydantic_is_read_as_pydantic_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBFLEET_GRACE_SECONDS", " 7 ")
    monkeypatch.setenv("jobfleet_lease_seconds", "12")
    config = load_settings()
    assert config.grace_seconds == 7.0 and config.lease_seconds == 12.0
    monkeypatch.setenv("JOBFLEET_GRACE_SECONDS", "soon")
    with pytest.raises(ConfigError, match="JOBFLEET_GRACE_SECONDS='soon' is not allowed"):
        load_settings()


def test_defaults_are_what_pydantic_makes_of_them() -> None:
    plain = vars(load_settings())
    for name, value in dict(_pydantic_model()()).items():
        assert plain[name] == value and type(plain[name]) is type(value), name
