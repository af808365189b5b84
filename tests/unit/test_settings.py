"""Every numeric setting is finite and bounded; a bad one names the variable, value and rule."""

from __future__ import annotations

import pytest

from jobfleet.errors import ConfigError
from jobfleet.settings import BOUNDS, Settings, load_settings


def is_int(field: str) -> bool:
    return Settings.model_fields[field].annotation is int


NUMERIC = sorted(
    name
    for name, info in Settings.model_fields.items()
    if info.annotation in (int, float, int | None, float | None)
)
FLOATS = sorted(n for n in NUMERIC if Settings.model_fields[n].annotation in (float, float | None))


@pytest.mark.parametrize("field", NUMERIC)
def test_every_numeric_setting_is_bounded_both_ways(field: str) -> None:
    """In BOUNDS (with the reason), or by its own Field(ge=..., le=...)."""
    if field in BOUNDS:
        return
    metadata = Settings.model_fields[field].metadata
    assert any(hasattr(m, "ge") or hasattr(m, "gt") for m in metadata), field
    assert any(hasattr(m, "le") or hasattr(m, "lt") for m in metadata), field


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
