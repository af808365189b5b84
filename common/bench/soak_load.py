"""The soak's offered load: a steady rate of short jobs with retries and failures mixed in,
and the pure sums that keep it steady and say whether a measure stayed flat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    type: str
    share: float  # of the offered rate
    payload: Any
    options: tuple[tuple[str, Any], ...] = ()


# Short jobs, most of them no-ops; a flaky job fails once and succeeds on its retry (1 s
# later); an always-failing one uses its two attempts and ends dead (kept for the DLQ).
MIX = (
    Kind("noop", 0.94, None),
    Kind("echo", 0.03, {"soak": True}),
    Kind("flaky", 0.025, {"fail_times": 1}, (("backoff", "fixed:1"),)),
    Kind("fail", 0.005, {"message": "soak"}, (("max_attempts", 2), ("backoff", "fixed:1"))),
)


def due(rate: float, share: float, elapsed: float, offered: int) -> int:
    """How many jobs of a kind to enqueue now so that its total keeps to rate x share x
    elapsed (a late tick catches up; an early one adds nothing)."""
    return max(0, int(rate * share * elapsed) - offered)


def growth(values: list[float], warm_up: int = 1) -> float | None:
    """The mean of the last half of `values` over the mean of the first half, after the first
    `warm_up` samples: about 1.0 for a flat measure, 2.0 for one that doubled. None when
    there are too few samples or the first half is zero."""
    settled = values[warm_up:]
    if len(settled) < 2:
        return None
    half = len(settled) // 2
    first, last = settled[:half], settled[len(settled) - half :]
    before = sum(first) / len(first)
    if before <= 0:
        return None
    return (sum(last) / len(last)) / before
