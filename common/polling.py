"""Waiting for a condition with a deadline, never a bare sleep: the tests, the drill and the
benchmarks watch real processes and rows this way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    timeout: float = 30,
    what: str = "condition",
    *,
    pause: float = 0.01,
    max_pause: float | None = None,
    error: type[Exception] = TimeoutError,
) -> T:
    """Call `check` until it returns something truthy, and return that; `error` saying what
    was awaited after `timeout` seconds. The pause between looks doubles from `pause` up to
    `max_pause` (None: it stays at `pause`, for measurements that want the moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
        if max_pause is not None:
            pause = min(pause * 2, max_pause)
