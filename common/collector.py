"""The cyclic garbage collector's settings for jobfleet's long-running processes: a node's
supervisor and the workers it forks, and the HTTP API's processes.

Measured on a 100k no-op drain (issue 17): the supervisor spent 110-120 ms of its 1.6 s in
the collector. Most of it (65-73 ms) was four full collections, each walking every object
made at start (modules, classes, functions: 16 ms a walk, during which no claim, write or
hand-out moved); the rest was 480 young collections, one per 700 tuples kept (claimed jobs,
outcomes waiting to be written). Frozen, the start's objects are never walked again (and the
forked workers' collections never write to the pages they share with the supervisor); with
the young threshold at 10,000 the collector took 25 ms in all. The API's processes make as
many short-lived objects a request: at 32 clients, 4,600-4,680 POST /jobs a second against
3,960-4,090 (two interleaved runs each, `jobfleet api --processes 2`).
"""

from __future__ import annotations

import gc

# Objects allocated less freed before a young collection (CPython's default is 700). The
# older generations keep their defaults: one in 10 collections of the one below.
YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what exists now and raise the young threshold. Called once a process has
    built what it runs with: the supervisor before it forks its workers (who inherit both),
    an HTTP process once its app is made."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    gc.freeze()
