"""Limits per job type: `max_running` (jobs of the type running at once across the cluster) and
`rate` (starts per period across the cluster), set in `@handler(...)` and changed at run time
with `jobfleet types set`; with `limit_key` (a payload field), both hold per value of that
field, and the type's keys are claimed in turns (sql/0011_limit_keys.sql, claim_keyed).

They are kept by the database where jobs are claimed (sql/0009_type_limits.sql, claim_limited
in sql/queries/processing.sql). What lives here: reading and checking the settings, the
sliding window's arithmetic as the node reads it (to know how long to hold a type back), and
the list and the run-time changes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from jobfleet.errors import describe
from jobfleet.options import OptionError, check_name
from jobfleet.queries import sql
from jobfleet.text import text_problem

RATE_PERIODS = {"s": 1, "m": 60, "h": 3600}
_RATE = re.compile(r"([0-9]{1,10})/([smh])")
# Bounds that keep the counters in an integer column and the numbers meaningful.
MAX_RUNNING_MAX = RATE_COUNT_MAX = 2_000_000_000
# A limit key names a payload field: at most this many characters (the column's CHECK).
LIMIT_KEY_MAX = 128
# The recount keys a type's queue again for this long after its limit key changed: an
# enqueue that read the old field before the change committed is caught within a recount.
RECENT_KEY_CHANGE_SECONDS = 600

# `jobfleet types set` and the API take, for each limit, a value, "none" (no limit, whatever the
# decorator says) or "default" (back to what the decorator says).
KEEP, SET, DEFAULT = "keep", "set", "default"


def parse_rate(value: object) -> tuple[int, int]:
    """'100/m' -> (100, 60): at most 100 starts in any 60 seconds."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match[1]) <= RATE_COUNT_MAX:
        raise OptionError(
            "rate",
            f"rate {describe(value)} is not valid: use N/s, N/m or N/h with N from 1 to "
            f"{RATE_COUNT_MAX:,} (starts per second, minute or hour)",
        )
    return int(match[1]), RATE_PERIODS[match[2]]


def format_rate(count: int | None, seconds: int | None) -> str | None:
    if count is None or seconds is None:
        return None
    unit = {v: k for k, v in RATE_PERIODS.items()}.get(seconds, f"{seconds}s")
    return f"{count}/{unit}"


def check_max_running(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError("max_running", f"max_running must be a whole number, not {value!r}")
    if not 0 <= value <= MAX_RUNNING_MAX:
        raise OptionError(
            "max_running", f"max_running must be 0 to {MAX_RUNNING_MAX:,}, not {value}"
        )
    return value


def check_limit_key(value: object) -> str:
    """A payload field's name: 1 to LIMIT_KEY_MAX characters PostgreSQL can store."""
    if not isinstance(value, str) or not 1 <= len(value) <= LIMIT_KEY_MAX:
        raise OptionError(
            "limit_key",
            f"limit_key {describe(value)} is not valid: the name of a payload field, 1 to "
            f"{LIMIT_KEY_MAX} characters",
        )
    problem = text_problem(value)
    if problem is not None:
        raise OptionError("limit_key", f"limit_key {problem}")
    return value


# -- the sliding window, as the claim keeps it (jobfleet_rate_used / jobfleet_rate_logged) --


def rate_used(log: Sequence[float], at: float, period: float) -> int:
    """Starts in the window (at - period, at]: `log` is (time, count) pairs, flattened."""
    return int(sum(log[i + 1] for i in range(0, len(log) - 1, 2) if log[i] > at - period))


def rate_opens_in(log: Sequence[float], at: float, period: float, count: int) -> float:
    """Seconds from `at` until the window holds fewer than `count` starts (0: it does now).
    The oldest pairs leave first, `period` after they were logged."""
    used = rate_used(log, at, period)
    if used < count:
        return 0.0
    for i in range(0, len(log) - 1, 2):
        if log[i] > at - period:
            used -= int(log[i + 1])
            if used < count:
                return max(0.0, log[i] + period - at)
    return 0.0


class LimitState(NamedTuple):
    """A limited type as a claim left it (the limit_state query)."""

    max_running: int | None
    running: int
    rate_count: int | None
    rate_seconds: int | None
    rate_log: Sequence[float]
    now: float  # the database's clock


class Hold(NamedTuple):
    limit: str  # "max_running" or "rate"
    seconds: float | None  # until the rate's window opens; None: until a job of it ends


def hold(state: LimitState) -> Hold | None:
    """Whether a type's limits leave no room for another job now, and for how long: a claim of
    it would get nothing (None: there is room). The rate's wait is known; a full max_running
    lasts until a job of the type ends, which the node hears of for its own jobs only."""
    if state.rate_count is not None and state.rate_seconds is not None:
        wait = rate_opens_in(state.rate_log, state.now, state.rate_seconds, state.rate_count)
        if wait > 0:
            return Hold("rate", wait)
    if state.max_running is not None and state.running >= state.max_running:
        return Hold("max_running", None)
    return None


# -- the list and the changes at run time --


def list_types(conn: Any) -> list[dict[str, Any]]:
    """Every type a node published or someone limited: its defaults, its limits (in force,
    declared, set at run time), the jobs running and the starts in the rate's window."""
    return sorted(map(_type_shape, conn.execute(sql("type_list"))), key=lambda t: str(t["type"]))


def _type_shape(row: Sequence[Any]) -> dict[str, Any]:
    (type, queue, priority, max_attempts, timeout, backoff, backoff_seconds, max_running,
     rate_count, rate_seconds, declared_max, declared_count, declared_seconds, max_set,
     rate_set, running, rate_used_now, limit_key, declared_key, key_set) = row  # fmt: skip
    set_now = (("max_running", max_set), ("rate", rate_set), ("limit_key", key_set))
    return {
        "type": type,
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "backoff": backoff,
        "backoff_seconds": backoff_seconds,
        "max_running": max_running,
        "rate": format_rate(rate_count, rate_seconds),
        "limit_key": limit_key,
        "declared": {
            "max_running": declared_max,
            "rate": format_rate(declared_count, declared_seconds),
            "limit_key": declared_key,
        },
        "set_at_run_time": [n for n, s in set_now if s],
        "running": running,
        "rate_used": rate_used_now,
    }


def limit_change(option: str, value: str | None) -> tuple[str, Any]:
    """A `types set` option as (action, value): absent -> keep; "none" -> set to no limit;
    "default" -> the decorator's; else the value, checked."""
    if value is None:
        return KEEP, None
    if value == "none":
        return SET, None
    if value == "default":
        return DEFAULT, None
    if option == "rate":
        return SET, parse_rate(value)
    if option == "limit_key":
        return SET, check_limit_key(value)
    if not value.isdigit():
        raise OptionError(option, f"{option} {describe(value)} is not valid: N, none or default")
    return SET, check_max_running(int(value))


def set_limits(
    conn: Any,
    type: str,
    *,
    max_running: str | None = None,
    rate: str | None = None,
    limit_key: str | None = None,
) -> dict[str, Any]:
    """Change a type's limits (and limit key) for the whole cluster (see limit_change for the
    values), in the caller's transaction; return the type as `list_types` shows it. Jobs of the
    type already running count toward the new limits at once, for their keys (recount); the
    queued ones are keyed with the new field."""
    check_name("type", type)
    max_action, max_value = limit_change("max_running", max_running)
    rate_action, rate_value = limit_change("rate", rate)
    key_action, key_value = limit_change("limit_key", limit_key)
    count, seconds = rate_value or (None, None)
    with conn.transaction():  # the row stays locked from the change through the recount
        conn.execute(
            sql("set_type_limits"),
            {
                "type": type,
                "max_action": max_action,
                "max_running": max_value,
                "rate_action": rate_action,
                "rate_count": count,
                "rate_seconds": seconds,
                "key_action": key_action,
                "limit_key": key_value,
            },
        )
        if key_action != KEEP:
            conn.execute(sql("rekey_queued"), {"types": [type]})
        recount(conn, [type])
    (shown,) = [t for t in list_types(conn) if t["type"] == type]
    return shown


def recount(conn: Any, types: Sequence[str]) -> list[tuple[str, int, int, int, str | None]]:
    """Set the types' running counters, and their keys', to the jobs running (limit_recount),
    on a blocking connection in the caller's transaction; the (type, counted, running,
    adopted, key) that were off (key None: the type's own counter)."""
    with conn.transaction():
        conn.execute(sql("index_plans"))
        conn.execute(sql("lock_type_limits"), {"types": sorted(types)})
        rows = conn.execute(sql("limit_recount"), {"types": sorted(types)}).fetchall()
    return sorted(
        ((str(t), int(c), int(r), int(a), k) for t, c, r, a, k in rows),
        key=lambda row: (row[0], row[4] or ""),
    )


def rekey(conn: Any, type: str) -> None:
    """The type's limit key changed (a node declared another): key its queued jobs with it,
    and count the running ones for their keys, in the caller's transaction."""
    with conn.transaction():
        conn.execute(sql("lock_type_limits"), {"types": [type]})
        conn.execute(sql("rekey_queued"), {"types": [type]})
    recount(conn, [type])
