"""Validation of what callers pass in: job types, payloads and enqueue options.

Everything here raises ValueError naming the option at fault, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from jobfleet.errors import describe
from jobfleet.text import text_problem

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$")
PRIORITY_MIN, PRIORITY_MAX = 0, 32767
MAX_ATTEMPTS_LIMIT = 1000
BACKOFF_STRATEGIES = ("exponential", "linear", "fixed")
STATES = ("queued", "running", "succeeded", "cancelled", "dead")
# Job ids are PostgreSQL bigints: a larger id names no job and must not reach a query.
ID_MAX = 2**63 - 1
# A key is an opaque caller-chosen string; the cap keeps the unique index sane.
IDEMPOTENCY_KEY_MAX = 255

# Bounds on times and durations. Every time jobfleet stores must read back in any client: a
# timestamptz past year 9999 (or before year 1) in the reader's time zone breaks psycopg and
# Python's datetime for every later `GET /jobs` and `jobs list`, and seconds beyond these
# overflow PostgreSQL's interval arithmetic.
DAY = 86400
YEAR = 365 * DAY
# A job due more than a century from now is a mistake, not a plan.
DELAY_MAX_SECONDS = 100 * YEAR
# A year inside both ends of what Python's datetime holds (years 1 to 9999), so a reader in
# any time zone (offsets up to +-15 h) can show it and a later backoff cannot push it over.
RUN_AT_MIN = datetime(2, 1, 1, tzinfo=UTC)
RUN_AT_MAX = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# One attempt may run a year: an attempt's timeout is compared in the supervisor, and its
# lease is renewed meanwhile, so nothing longer is ever needed.
TIMEOUT_MAX_SECONDS = YEAR
# A retry's base delay: a week. Longer waits are a schedule (enqueue with run_at), and
# JOBFLEET_BACKOFF_MAX_SECONDS caps one delay at the same bound.
BACKOFF_MAX_SECONDS = 7 * DAY
# How deeply arrays and objects may nest in a payload or a result. What is written must read
# back everywhere: the HTTP API's serialiser (pydantic-core) gives up at about 255 levels and
# common JSON libraries at 128 (serde_json); 64 leaves room for the documents a payload
# travels in (a job, the dead-letter snapshot).
MAX_JSON_DEPTH = 64


class OptionError(ValueError):
    """A bad option; `option` names it (an HTTP 422 points at that field)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def check_name(option: str, value: Any) -> str:
    # fullmatch: `$` would let a trailing newline through, which breaks COPY's text format.
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
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
# A NUL in a string or key is encoded as the escape \u0000; a backslash that is itself
# escaped (`\\u0000`, the six characters of text) is not one.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BYTE_STRING = re.compile(b'"[^"]*"')
_NESTING = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def encode_json(option: str, value: Any, limit: int) -> str:
    """`value` as JSON text, or ValueError when it is not JSON, holds what PostgreSQL cannot
    store (NUL, lone surrogates), nests deeper than MAX_JSON_DEPTH or is over `limit` bytes.

    On the enqueue hot path: each check is a scan in C that small payloads pass at once."""
    try:
        text = _encode(value)
    except RecursionError:  # nested far deeper than the limit: the encoder gave up
        raise OptionError(option, _too_deep(option)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise OptionError(option, f"{option} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise OptionError(
            option, f"{option} contains a NUL character (\\u0000), which PostgreSQL rejects"
        )
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate: the encoder writes them as they are
            problem = text_problem(text)
            raise OptionError(
                option, f"{option} {problem} of its JSON text, which PostgreSQL rejects"
            ) from None
    # Nesting deeper than the limit takes at least two brackets per level: short texts (most)
    # cannot, and counting brackets bounds the depth before it is measured.
    if (
        len(text) > 2 * MAX_JSON_DEPTH
        and text.count("[") + text.count("{") > MAX_JSON_DEPTH
        and _too_deep_json(text)
    ):
        raise OptionError(option, _too_deep(option))
    if size > limit:
        raise OptionError(
            option,
            f"{option} is {_size(size)}, over the limit of {_size(limit)}: raise "
            f"JOBFLEET_MAX_{option.upper()}_BYTES, or store the data elsewhere and pass a "
            "reference",
        )
    return text


def _too_deep_json(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_JSON_DEPTH in JSON text (brackets
    inside strings aside).

    In bytes, in C: drop escaped backslashes and quotes (every quote left delimits a string),
    keep only quotes and brackets, then drop the strings; those are all `""` unless a string
    holds a bracket."""
    data = text.encode("utf-8").replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = data.translate(None, _NOT_STRUCTURE)
    brackets = structure.replace(b'""', b"")
    if b'"' in brackets:  # a string holds brackets
        brackets = _BYTE_STRING.sub(b"", structure)
    # A round strips one or two levels (the innermost [] pairs, then {}), so a document gone
    # within half the limit's rounds is within the limit (most are gone in a few rounds).
    left = brackets
    for _ in range(MAX_JSON_DEPTH // 2):
        if not left:
            return False
        left = left.replace(b"[]", b"").replace(b"{}", b"")
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH


def _too_deep(option: str) -> str:
    return (
        f"{option} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels, more than "
        "every reader can read back: flatten it"
    )


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
    return strategy, _number(
        "backoff", seconds, minimum=0.0, maximum=BACKOFF_MAX_SECONDS, bound="7 days"
    )


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
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        utc = None
    if utc is None or not RUN_AT_MIN <= utc <= RUN_AT_MAX:
        raise OptionError(
            option,
            f"{option} {describe(value)} is out of range: use a time in the years "
            f"{RUN_AT_MIN.year} to {RUN_AT_MAX.year} (in UTC, after applying its offset)",
        )
    return utc


def _number(
    option: str,
    value: Any,
    *,
    minimum: float,
    maximum: float,
    bound: str,
    inclusive: bool = True,
) -> float:
    """A finite number of seconds from `minimum` to `maximum` (`bound` says it in words)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(option, f"{option} {describe(value)} must be a number") from None
    except OverflowError:  # an int beyond a float's range: beyond either bound too
        number = maximum * 2 if value > 0 else minimum - 1
    if isinstance(value, bool) or not math.isfinite(number):
        raise OptionError(option, f"{option} {describe(value)} must be a finite number")
    if number < minimum or (not inclusive and number == minimum):
        relation = ">=" if inclusive else ">"
        raise OptionError(option, f"{option} {describe(value)} must be {relation} {minimum:g}")
    if number > maximum:
        raise OptionError(
            option,
            f"{option} {describe(value)} is too large: use at most {maximum:.0f} seconds ({bound})",
        )
    return number


def _integer(option: str, value: Any, low: int, high: int) -> int:
    number = value
    if isinstance(value, bool) or not isinstance(value, int):
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value.strip()):
            raise OptionError(option, f"{option} {describe(value)} must be an integer")
        try:
            number = int(value)
        except ValueError:  # more digits than Python converts (4300): out of any range
            raise OptionError(
                option, f"{option} {describe(value)} is out of range: use {low} to {high}"
            ) from None
    if not low <= number <= high:
        raise OptionError(
            option, f"{option} {describe(number)} is out of range: use {low} to {high}"
        )
    return int(number)


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
    unique_for: float | None = None  # seconds: a same job enqueued within them is this one

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
            "unique_for": self.unique_for,
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
        "unique_for",
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
    if key is not None and (problem := text_problem(key)) is not None:
        raise OptionError("idempotency_key", f"idempotency_key {problem}, which PostgreSQL rejects")
    return EnqueueOptions(
        queue=None if get("queue") is None else check_name("queue", get("queue")),
        priority=None
        if get("priority") is None
        else _integer("priority", get("priority"), PRIORITY_MIN, PRIORITY_MAX),
        delay=None
        if get("delay") is None
        else _number(
            "delay", get("delay"), minimum=0.0, maximum=DELAY_MAX_SECONDS, bound="100 years"
        ),
        run_at=None if get("run_at") is None else parse_time("run_at", get("run_at")),
        max_attempts=None
        if get("max_attempts") is None
        else _integer("max_attempts", get("max_attempts"), 1, MAX_ATTEMPTS_LIMIT),
        timeout=None
        if get("timeout") is None
        else _number(
            "timeout",
            get("timeout"),
            minimum=0.0,
            inclusive=False,
            maximum=TIMEOUT_MAX_SECONDS,
            bound="a year",
        ),
        backoff=strategy,
        backoff_seconds=seconds,
        idempotency_key=key,
        unique_for=None
        if get("unique_for") is None
        else _number(
            "unique_for",
            get("unique_for"),
            minimum=0.0,
            inclusive=False,
            maximum=DELAY_MAX_SECONDS,
            bound="100 years",
        ),
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(option: str, text: str) -> float:
    """'45s', '30m', '12h', '7d', '2w' or plain seconds, up to 100 years."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise OptionError(
            option,
            f"{option} {describe(text)} is not a duration: use a number with s, m, h, d or w "
            "(e.g. 7d)",
        )
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > DELAY_MAX_SECONDS:  # PostgreSQL's interval arithmetic overflows beyond
        raise OptionError(option, f"{option} {describe(text)} is too long: use at most 100 years")
    return seconds
