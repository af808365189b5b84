"""The crash-loop brake: children that die unexpectedly in quick succession slow their own
replacement down (how much: decisions.spawn_delay), so a handler module that kills every
worker at its first job does not make the node fork as fast as it can."""

from __future__ import annotations

from collections import deque

from jobfleet.log import get_logger
from jobfleet.supervisor.decisions import spawn_delay

log = get_logger("jobfleet.supervisor")

# Unexpected deaths within this window count towards the brake.
CRASH_WINDOW_SECONDS = 10.0


class CrashLoop:
    def __init__(self, node: str) -> None:
        self.node = node
        self.deaths: deque[float] = deque()  # unexpected deaths in the window (monotonic)
        self.spawn_not_before = 0.0

    def died(self, now: float) -> None:
        self.deaths.append(now)

    def may_spawn(self, now: float) -> bool:
        return now >= self.spawn_not_before

    def spawned(self, now: float, desired: int) -> None:
        """A child was forked now: put the next spawn off if children keep dying."""
        while self.deaths and now - self.deaths[0] > CRASH_WINDOW_SECONDS:
            self.deaths.popleft()
        delay = spawn_delay(len(self.deaths), desired)
        if delay:
            self.spawn_not_before = now + delay
            log.error(
                "workers keep dying: slowing down restarts",
                extra={
                    "node": self.node,
                    "deaths": len(self.deaths),
                    "window_seconds": CRASH_WINDOW_SECONDS,
                    "next_spawn_in": round(delay, 2),
                },
            )
