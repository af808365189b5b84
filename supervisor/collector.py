"""The cyclic garbage collector's settings for a node's processes (the supervisor and the
workers it forks).

Measured on a 100k no-op drain (issue 17): the supervisor spent 110-120 ms of its 1.6 s in
the collector. Most of it (65-73 ms) was four full collections, each walking every object
made at start (modules, classes, functions: 16 ms a walk, during which no claim, write or
hand-out moved); the rest was 480 young collections, one per 700 tuples kept (claimed jobs,
outcomes waiting to be written). Frozen, the start's objects are never walked again (and the
forked workers' collections never write to the pages they share with the supervisor); with
the young threshold at 10,000 the collector took 25 ms in all.
"""

from __future__ import annotations

import gc

# Objects allocated less freed before a young collection (CPython's default is 700). The
# older generations keep their defaults: one in 10 collections of the one below.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what exists now and raise the young threshold. Called once the node is built,
    before it forks its workers (who inherit both)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.freeze()
