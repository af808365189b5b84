"""When an idle node's periodic loops wake: on one grid of the event loop's clock (monotonic),
so that loops whose periods divide one another wake together, in one turn of the loop, rather
than each on a phase of its own.

An idle node had the watch of its children (twice a second), the metrics (once a second) and
the heartbeat (every 5 s) each wake it on its own phase: 4-5 wake-ups a second, and on a
2-core VM each one costs more than the little work it does (issue 17: the idle node read
1.6-3.3 % of a core against a target of < 1 %).
"""

from __future__ import annotations


def until_next(period: float, now: float) -> float:
    """Seconds from `now` to the next multiple of `period` on the same clock: a whole period
    when `now` is on one, never 0, so a loop that sleeps this long cannot spin."""
    if period <= 0:
        raise ValueError("a period is a positive number of seconds")
    return period - now % period
