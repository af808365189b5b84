"""When an idle node's periodic loops wake: on one grid of the event loop's clock (monotonic),
at this node's phase, so that loops whose periods divide one another wake together, in one
turn of the loop, rather than each on a phase of its own.

An idle node had the watch of its children (twice a second), the metrics (once a second) and
the heartbeat (every 5 s) each wake it on its own phase: 4-5 wake-ups a second, and on a
2-core VM each one costs more than the little work it does (issue 17: the idle node read
1.6-3.3 % of a core against a target of < 1 %).
"""

from __future__ import annotations

import random

# This process's place on the grid. The monotonic clock is the host's, shared by every node on
# it: on one grid, all of them would wake at the same instant, and send their heartbeats,
# lease renewals and reaper passes in one burst. Each node's loops keep to its own phase.
PHASE = random.uniform(0.0, 60.0)


def until_next(period: float, now: float, phase: float = PHASE) -> float:
    """Seconds from `now` to the next instant `phase` plus a multiple of `period` on the same
    clock: a whole period when `now` is on one, never 0, so a loop that sleeps this long
    cannot spin. Loops of one phase whose periods divide one another meet."""
    if period <= 0:
        raise ValueError("a period is a positive number of seconds")
    return period - (now - phase) % period
