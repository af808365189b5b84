"""Validation of what callers pass in: job types, payloads and enqueue options.

Everything here raises ValueError naming the option at fault, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobfleet.errors import describe

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$")
PRIORITY_MIN, PRIORITY_MAX = 0, 32767
MAX_ATTEMPTS_LIMIT = 1000
BACKOFF_STRATEGIES = ("exponential", "linear", "fixed")
STATES = ("queued", "running", "succeeded", "cancelled", "dead")
# A key is an opaque caller-chosen string; the cap keeps the unique index sane.
IDEMPOTENCY_KEY_MAX = 255


class OptionError(ValueError):
    """A bad option; `option` names it (an HTTP 422 points at that field)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def check_name(option: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise OptionError(
            option,
            f"{option} {describe(value)} is not valid: use 1-128 letters, digits, '_', '.', "
            "':' or '-', not starting with a punctuation mark",
        )
    return value


def check_state(value: Any) -> str:
    if value not in STATES:
        raise OptionError("state", f"state {describe(value)} is not one of {', '.join(STATES)}")
    return str(value)


# One encoder, made once: json.dumps with keyword arguments builds a new one per call.
_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


def encode_json(option: str, value: Any, limit: int) -> str:
    """`value` as JSON text, or ValueError when it is not JSON or larger than `limit` bytes."""
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        raise OptionError(option, f"{option} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:
        raise OptionError(
            option, f"{option} contains a NUL character (\\u0000), which PostgreSQL rejects"
        )
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > limit:
        raise OptionError(
            option,
            f"{option} is {_size(size)}, over the limit of {_size(limit)}: raise "
            f"JOBFLEET_MAX_{option.upper()}_BYTES, or store the data elsewhere and pass a "
            "reference",
        )
    return text


def _size(n: int) -> str:
    """Exact bytes, with a rounded unit to read by: two sizes either side of a limit never
    print alike."""
    if n >= 1024 * 1024:
        return f"{n} bytes ({n / (1024 * 1024):.1f} MiB)"
    if n >= 1024:
        return f"{n} bytes ({n / 1024:.1f} KiB)"
    return f"{n} bytes"


def parse_backoff(value: Any) -> tuple[str | None, float | None]:
    """'exponential', 'linear' or 'fixed', optionally ':SECONDS' (the base delay)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        raise OptionError("backoff", f"backoff {describe(value)} must be a string")
    strategy, _, seconds = value.partition(":")
    if strategy not in BACKOFF_STRATEGIES:
        raise OptionError(
            "backoff",
            f"backoff {describe(value)} is not one of {', '.join(BACKOFF_STRATEGIES)} "
            "(optionally with ':SECONDS', e.g. 'fixed:10')",
        )
    if not seconds:
        return strategy, None
    return strategy, _number("backoff", seconds, minimum=0.0)


def parse_time(option: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise OptionError(
                option,
                f"{option} {describe(value)} is not an ISO 8601 time such as "
                "2026-01-31T12:00:00+00:00",
            ) from None
    else:
        raise OptionError(
            option, f"{option} {describe(value)} must be an ISO 8601 string or a datetime"
        )
    if moment.tzinfo is None:  # a naive time is taken as UTC, never as the server's zone
        moment = moment.replace(tzinfo=UTC)
    return moment


def _number(option: str, value: Any, *, minimum: float, inclusive: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(option, f"{option} {describe(value)} must be a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise OptionError(option, f"{option} {describe(value)} must be a finite number")
    if number < minimum or (not inclusive and number == minimum):
        relation = ">=" if inclusive else ">"
        raise OptionError(option, f"{option} {describe(value)} must be {relation} {minimum:g}")
    return number


def _integer(option: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        else:
            raise OptionError(option, f"{option} {describe(value)} must be an integer")
    if not low <= value <= high:
        raise OptionError(option, f"{option} {value} is out of range: use {low} to {high}")
    return int(value)


@dataclass(frozen=True)
class EnqueueOptions:
    """Checked options; None means 'the type's default, else the system's'."""

    queue: str | None = None
    priority: int | None = None
    delay: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: str | None = None
    backoff_seconds: float | None = None
    idempotency_key: str | None = None

    def as_params(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "priority": self.priority,
            "delay": self.delay,
            "run_at": self.run_at,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "backoff": self.backoff,
            "backoff_seconds": self.backoff_seconds,
            "idempotency_key": self.idempotency_key,
        }


def check_options(**options: Any) -> EnqueueOptions:
    """Validate enqueue options by name; unknown names are errors too."""
    known = {
        "queue",
        "priority",
        "delay",
        "run_at",
        "max_attempts",
        "timeout",
        "backoff",
        "idempotency_key",
    }
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(
            unknown[0], f"unknown option {unknown[0]!r}: use {', '.join(sorted(known))}"
        )
    get = options.get
    if get("delay") is not None and get("run_at") is not None:
        raise OptionError("run_at", "delay and run_at both given: pass one of them")
    strategy, seconds = parse_backoff(get("backoff"))
    key = get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX):
        raise OptionError(
            "idempotency_key",
            f"idempotency_key {describe(key)} must be a string of 1 to "
            f"{IDEMPOTENCY_KEY_MAX} characters",
        )
    return EnqueueOptions(
        queue=None if get("queue") is None else check_name("queue", get("queue")),
        priority=None
        if get("priority") is None
        else _integer("priority", get("priority"), PRIORITY_MIN, PRIORITY_MAX),
        delay=None if get("delay") is None else _number("delay", get("delay"), minimum=0.0),
        run_at=None if get("run_at") is None else parse_time("run_at", get("run_at")),
        max_attempts=None
        if get("max_attempts") is None
        else _integer("max_attempts", get("max_attempts"), 1, MAX_ATTEMPTS_LIMIT),
        timeout=None
        if get("timeout") is None
        else _number("timeout", get("timeout"), minimum=0.0, inclusive=False),
        backoff=strategy,
        backoff_seconds=seconds,
        idempotency_key=key,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(option: str, text: str) -> float:
    """'45s', '30m', '12h', '7d', '2w' or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise OptionError(
            option,
            f"{option} {describe(text)} is not a duration: use a number with s, m, h, d or w "
            "(e.g. 7d)",
        )
    return float(match[1]) * _UNIT_SECONDS[match[2]]
