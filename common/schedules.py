"""Periodic jobs' schedules, as pure functions: checking one, naming it, and when its next tick
falls. A schedule is `cron` (five fields, UTC, parsed by cronsim) or `every` (seconds, at least
1). Ticks of `every=N` fall on multiples of N seconds since the Unix epoch, so every node and
every leader agree on them without talking; a cron schedule's, where its fields say, in UTC.

Stored and compared as one string: "cron 0 3 * * *" or "every 30".
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from jobfleet.options import OptionError

EVERY_MIN_SECONDS = 1.0
EVERY_MAX_SECONDS = 366 * 24 * 3600.0  # a year and a day: past that, use cron
CRON_MAX_CHARS = 200


def schedule_of(cron: object = None, every: object = None) -> str | None:
    """The canonical schedule for `@handler(cron=..., every=...)`, or None for neither;
    OptionError naming the option for anything else."""
    if cron is not None and every is not None:
        raise OptionError("cron", "cron and every both given: a type has one schedule")
    if cron is not None:
        if not isinstance(cron, str) or len(cron) > CRON_MAX_CHARS:
            raise OptionError("cron", f"cron must be a string of five fields, not {cron!r}")
        fields = cron.split()
        if len(fields) != 5:
            raise OptionError(
                "cron", f"cron {cron!r} must have five fields (minute hour day month weekday)"
            )
        try:
            CronSim(" ".join(fields), datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise OptionError("cron", f"cron {cron!r} is not valid: {exc}") from None
        return "cron " + " ".join(fields)
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, int | float) or math.isnan(every):
            raise OptionError("every", f"every must be a number of seconds, not {every!r}")
        if not EVERY_MIN_SECONDS <= every <= EVERY_MAX_SECONDS:
            raise OptionError(
                "every",
                f"every={every!r} is out of range: use {EVERY_MIN_SECONDS:g} to "
                f"{EVERY_MAX_SECONDS:.0f} seconds (cron for longer periods)",
            )
        return f"every {float(every):g}"
    return None


def next_tick(schedule: str, after: datetime) -> datetime:
    """The schedule's first tick strictly after `after` (an aware datetime), in UTC."""
    kind, _, spec = schedule.partition(" ")
    after = after.astimezone(UTC)
    if kind == "every":
        period = float(spec)
        ticks = math.floor(after.timestamp() / period) + 1
        return datetime.fromtimestamp(ticks * period, UTC)
    if kind == "cron":
        # cronsim yields the ticks strictly after its start, to the second.
        return next(iter(CronSim(spec, after.replace(microsecond=0))))
    raise ValueError(f"not a schedule: {schedule!r}")
