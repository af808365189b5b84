"""The faults the drill inflicts, and how it watches the fleet recover from each.

Killing a worker tests the supervisor (it must record the crash and replace the child);
killing a whole node and pausing one past its lease test the database side (leases expire,
the reaper requeues the attempts as `lost`, other nodes run them, a paused node's late results
are fenced off).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from jobfleet.drill import queries
from jobfleet.drill.nodes import LocalNode
from jobfleet.drill.workload import QUEUE

KILL_CHILD = "kill worker"
KILL_NODE = "kill node"
PAUSE_NODE = "pause node"
# A struck node is stopped this long before its jobs are read, so that a statement it sent
# just before has been committed and what it holds no longer changes.
SETTLE_SECONDS = 0.3
# How long to wait for some node to hold work before striking one that holds none.
WAIT_FOR_WORK_SECONDS = 5.0
ENDED = ("succeeded", "dead", "cancelled")


@dataclass
class Fault:
    at: float  # planned, seconds into the drill
    kind: str
    node: str = ""
    struck: float | None = None  # monotonic time it happened
    held: list[tuple[int, int]] = field(default_factory=list)  # (job id, attempt)
    released: float | None = None  # seconds until every held attempt was out of its hands
    rerun: float | None = None  # seconds until every held job ran again elsewhere (or ended)
    resume_at: float | None = None  # a pause: monotonic time of SIGCONT

    @property
    def hits_node(self) -> bool:
        return self.kind in (KILL_NODE, PAUSE_NODE)

    @property
    def recovering(self) -> bool:
        return self.hits_node and self.struck is not None and self.rerun is None


def plan(duration: float, rnd: random.Random) -> list[Fault]:
    """Node kills (one per 20 s, at least one) over 15-40 % of the drill, then one pause at
    45-55 %, while jobs still arrive; worker kills at random over 10-90 %."""
    kills = max(1, round(duration / 20))
    step = 0.25 * duration / kills
    faults = [
        Fault(at=(0.15 + rnd.uniform(0, 0.25) / kills) * duration + i * step, kind=KILL_NODE)
        for i in range(kills)
    ]
    faults.append(Fault(at=rnd.uniform(0.45, 0.55) * duration, kind=PAUSE_NODE))
    faults += [
        Fault(at=rnd.uniform(0.1, 0.9) * duration, kind=KILL_CHILD)
        for _ in range(max(2, round(duration / 3)))
    ]
    return sorted(faults, key=lambda f: f.at)


class Chaos:
    """Strikes the planned faults in order and times recovery. A node fault waits until the
    previous one's jobs run elsewhere, so each recovery is timed on its own."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        fleet: Sequence[LocalNode],
        rnd: random.Random,
        pause_seconds: float,
    ) -> None:
        self.conn = conn
        self.fleet = fleet
        self.rnd = rnd
        self.pause_seconds = pause_seconds
        self.done: list[Fault] = []

    def strike(self, fault: Fault) -> str:
        """Inflict `fault`; return a line saying what was done."""
        if fault.kind == KILL_CHILD:
            return self._kill_child(fault)
        node = self._busiest()
        fault.node = node.name
        node.pause()  # a kill starts as a pause too: what it holds is read while it is frozen
        fault.struck = time.monotonic()
        time.sleep(SETTLE_SECONDS)
        fault.held = [
            (int(i), int(a))
            for i, a in self.conn.execute(queries.HELD_JOBS, {"queue": QUEUE, "node": node.name})
        ]
        self.done.append(fault)
        if fault.kind == PAUSE_NODE:
            fault.resume_at = fault.struck + self.pause_seconds
            return (
                f"paused node {node.name} (SIGSTOP to its process group) holding "
                f"{len(fault.held)} jobs; SIGCONT in {self.pause_seconds:.0f} s"
            )
        node.kill_and_restart()
        return (
            f"killed node {fault.node} (SIGKILL to its process group) holding "
            f"{len(fault.held)} jobs; started {node.name} in its place"
        )

    def resume_due(self, now: float) -> list[str]:
        said = []
        for fault in self.done:
            if fault.resume_at is not None and now >= fault.resume_at:
                fault.resume_at = None
                for node in self.fleet:
                    if node.name == fault.node and node.paused:
                        node.resume()
                        said.append(f"resumed node {node.name} (SIGCONT)")
        return said

    @property
    def pausing(self) -> bool:
        return any(f.resume_at is not None for f in self.done)

    def watch(self, now: float) -> list[str]:
        """Update recovery times of struck nodes' jobs; return lines for recoveries seen."""
        said = []
        for fault in self.done:
            if not fault.recovering or fault.struck is None:
                continue
            if not fault.held:
                fault.released = fault.rerun = 0.0
                continue
            held = dict(fault.held)
            rows = self.conn.execute(queries.WHERE_NOW, {"ids": list(held)}).fetchall()
            # Claimed again (a later attempt) or ended: it ran elsewhere. Not running: at least
            # the struck node's lease on it was given up.
            ran_again = [int(a) > held[int(i)] or s in ENDED for i, a, s in rows]
            out_of_hands = [
                again or s != "running" for again, (_, _, s) in zip(ran_again, rows, strict=True)
            ]
            if fault.released is None and all(out_of_hands):
                fault.released = now - fault.struck
            if all(ran_again):
                fault.rerun = now - fault.struck
                if fault.released is None:
                    fault.released = fault.rerun
                said.append(
                    f"{fault.node}'s {len(held)} jobs back in the queue after "
                    f"{fault.released:.1f} s, running elsewhere after {fault.rerun:.1f} s"
                )
        return said

    def _kill_child(self, fault: Fault) -> str:
        up = [n for n in self.fleet if not n.paused and n.children()]
        if not up:
            return "no worker to kill"
        node = self.rnd.choice(up)
        child = self.rnd.choice(node.children())
        fault.node = node.name
        fault.struck = time.monotonic()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            return f"worker {child} of {node.name} was already gone"
        return f"killed worker {child} of node {node.name} (SIGKILL)"

    def _busiest(self) -> LocalNode:
        """The running node holding the most jobs, waiting a little for one to hold any."""
        deadline = time.monotonic() + WAIT_FOR_WORK_SECONDS
        up = [n for n in self.fleet if not n.paused]
        while True:
            held = dict(self.conn.execute(queries.HELD_BY_NODE, {"queue": QUEUE}).fetchall())
            counts = {n.name: int(held.get(n.name, 0)) for n in up}
            best = max(up, key=lambda n: (counts[n.name], self.rnd.random()))
            if counts[best.name] or time.monotonic() > deadline:
                return best
            time.sleep(0.05)
