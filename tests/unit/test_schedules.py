"""Periodic jobs' schedules: checked, named, and their next ticks (in UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobfleet.options import OptionError
from jobfleet.schedules import next_tick, schedule_of


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_schedule_is_named_one_way() -> None:
    assert schedule_of(cron="0  3 * * *") == "cron 0 3 * * *"
    assert schedule_of(every=30) == "every 30" == schedule_of(every=30.0)
    assert schedule_of(every=1.5) == "every 1.5"
    assert schedule_of() is None


@pytest.mark.parametrize(
    ("cron", "every", "option", "says"),
    [
        ("0 3 * * *", 5, "cron", "both given"),
        ("0 3 * *", None, "cron", "five fields"),
        ("61 * * * *", None, "cron", "not valid"),
        (7, None, "cron", "must be a string"),
        (None, 0.5, "every", "out of range"),
        (None, float("nan"), "every", "number of seconds"),
        (None, True, "every", "number of seconds"),
        (None, "30", "every", "number of seconds"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_option(
    cron: object, every: object, option: str, says: str
) -> None:
    with pytest.raises(OptionError) as refused:
        schedule_of(cron=cron, every=every)
    assert refused.value.option == option and says in str(refused.value)


def test_a_cron_schedules_next_tick_is_in_utc() -> None:
    assert next_tick("cron 0 3 * * *", at(2026, 12, 6, 23, 0)) == at(2026, 12, 7, 3, 0)
    # The same instant given in another zone (08:00 in Tokyo is 23:00 UTC): 03:00 UTC next,
    # not 03:00 in Tokyo (18:00 UTC).
    tokyo = timezone(timedelta(hours=9))
    assert next_tick("cron 0 3 * * *", datetime(2026, 12, 7, 8, 0, tzinfo=tokyo)) == at(
        2026, 12, 7, 3, 0
    )
    # Strictly after: a tick at the very instant is not next.
    assert next_tick("cron */5 * * * *", at(2026, 12, 7, 3, 5)) == at(2026, 12, 7, 3, 10)
    assert next_tick("cron */5 * * * *", at(2026, 12, 7, 3, 4, 59)) == at(2026, 12, 7, 3, 5)


def test_every_ticks_on_multiples_of_its_period_since_the_epoch() -> None:
    # Every node and every leader agree on them without talking.
    assert next_tick("every 30", at(2026, 12, 7, 3, 0, 0)) == at(2026, 12, 7, 3, 0, 30)
    assert next_tick("every 30", at(2026, 12, 7, 3, 0, 29)) == at(2026, 12, 7, 3, 0, 30)
    assert next_tick("every 1", at(2026, 12, 7, 3, 0, 0) + timedelta(microseconds=999_999)) == at(
        2026, 12, 7, 3, 0, 1
    )
