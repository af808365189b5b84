"""Waiting for a condition with a deadline, never a bare sleep: the tests, the drill and the
benchmarks watch real processes and rows this way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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


def paced(
    every: float,
    *,
    until: Callable[[], object] | None = None,
    seconds: float | None = None,
    count: int | None = None,
    timeout: float = 30,
    what: str | Callable[[], object] = "condition",
    error: type[Exception] = TimeoutError,
) -> Iterator[int]:
    """Looks at a steady pace, for a watch that checks something at every look rather than
    waiting for one moment: yields each look's number, `every` seconds apart, until `until()`
    is true (checked before each look), `seconds` have passed since the first, or `count`
    looks were taken. `error` if `until` is still false after `timeout` seconds, saying
    `what` was awaited (a callable is asked then, for the state at that moment)."""
    started = time.monotonic()
    look = 0
    while True:
        if until is not None and until():
            return
        now = time.monotonic()
        if seconds is not None and now - started >= seconds:
            return
        if count is not None and look >= count:
            return
        if until is not None and now - started > timeout:
            awaited = what() if callable(what) else what
            raise error(f"timed out after {timeout:g} s waiting for {awaited}")
        yield look
        look += 1
        time.sleep(every)
