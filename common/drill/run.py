"""`jobfleet drill`: run a fleet of local nodes against the database, break it while it works,
then prove from the database's own records that nothing was lost, doubled or left behind."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psycopg

from jobfleet.db import connect, database_url
from jobfleet.drill import queries
from jobfleet.drill.failover import back_in_time, first_claims, timeline_table
from jobfleet.drill.failover_drill import FailoverDrill
from jobfleet.drill.faults import Chaos, Fault, plan
from jobfleet.drill.invariants import Check, clean_exits, count, fault_checks, job_checks
from jobfleet.drill.nodes import LocalNode
from jobfleet.drill.report import checks_table, faults_table, workload_table
from jobfleet.drill.workload import QUEUE, enqueue_workload
from jobfleet.migrate import migrate
from jobfleet.settings import Settings

# Short leases and quick beats so that a lost node's jobs come back within seconds.
LEASE_SECONDS = 3.0
REAPER_INTERVAL_SECONDS = 0.5
GRACE_SECONDS = 10.0
NODE_SETTINGS = {
    "JOBFLEET_LEASE_SECONDS": str(LEASE_SECONDS),
    # A statement's bound a second under the lease: the server then ends a node's
    # transaction within the lease too (transaction_bound), one a pause left open included.
    "JOBFLEET_STATEMENT_TIMEOUT_SECONDS": str(LEASE_SECONDS - 1),
    "JOBFLEET_REAPER_INTERVAL_SECONDS": str(REAPER_INTERVAL_SECONDS),
    "JOBFLEET_NODE_HEARTBEAT_SECONDS": "0.5",
    "JOBFLEET_KILL_GRACE_SECONDS": "0.5",
    "JOBFLEET_GRACE_SECONDS": str(GRACE_SECONDS),
    # The pruner must not delete the jobs the drill is about to check.
    "JOBFLEET_RETENTION_SECONDS": "0",
}
# A lease runs out at most LEASE_SECONDS after the node froze; a paused leader keeps its
# advisory lock, so the others reap only after a further lease; then one reaper interval each,
# plus slack for the drill's own polling. A pause lasts as long, so recovery never needs the
# paused node back.
RECOVERY_BOUND_SECONDS = 2 * LEASE_SECONDS + 2 * REAPER_INTERVAL_SECONDS + 2
PAUSE_SECONDS = RECOVERY_BOUND_SECONDS
# After a failover, every node claims on the new primary within a lease (its leases may have
# run out in the outage: the new leader reaps them at once) plus its reconnect back-off (at most
# 5 s between attempts).
FAILOVER_BOUND_SECONDS = LEASE_SECONDS + 5
PROGRESS_EVERY_SECONDS = 2.0
TICK_SECONDS = 0.1


@dataclass(frozen=True)
class DrillOptions:
    nodes: int = 3
    jobs: int = 3000
    duration: float = 30.0
    seed: int | None = None
    workers: int = 2
    yes: bool = False
    cleanup: bool = False  # delete the drill's jobs once the report is printed
    # A shell command that fails the primary over (instead of the node faults).
    failover: str | None = None


def run_drill(
    options: DrillOptions, config: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run the drill; print progress to `err` and the report to `out`; 0 if every invariant
    held."""
    if options.nodes < 2:
        raise ValueError("--nodes must be 2 or more: a lost node's jobs need a node to go to")
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    rnd = random.Random(seed)
    url = database_url(config)
    with connect(url, autocommit=True, config=config) as conn:
        _refuse_foreign_jobs(conn, options.yes)
        migrate(conn)
        conn.execute(queries.FORGET_PREVIOUS_DRILL, {"queue": QUEUE})
        conn.execute(queries.CREATE_CHARGES)
        conn.execute(queries.FORGET_CHARGES)
        ids = enqueue_workload(conn, options.jobs, options.duration, rnd)
    logs = Path(tempfile.mkdtemp(prefix="jobfleet-drill-"))
    env = {**os.environ, **NODE_SETTINGS, "JOBFLEET_DATABASE_URL": url}
    env.pop("JOBFLEET_NODE_NAME", None)
    fleet = [
        LocalNode(slot=i + 1, env=env, logs=logs, workers=options.workers)
        for i in range(options.nodes)
    ]
    started = time.monotonic()
    strike = _fail_over if options.failover else _break_nodes
    with _terminate_as_interrupt():
        try:
            struck = strike(url, config, fleet, ids, options, rnd, err)
        finally:
            for node in fleet:
                node.kill()
    # A connection of its own: the failover drill's first one went with the old primary.
    with connect(url, autocommit=True, config=config) as conn:
        names = [name for node in fleet for name in node.names]
        conn.execute(queries.FORGET_DRILL_NODES, {"names": names})
        checks = [*job_checks(conn, ids), *struck.checks]
        took = time.monotonic() - started
        print(
            f"jobfleet drill: {options.nodes} nodes x {options.workers} workers, "
            f"{options.jobs} jobs over {options.duration:g} s, seed {seed}, "
            f"lease {LEASE_SECONDS:g} s; took {took:.1f} s\n",
            file=out,
        )
        print(workload_table(conn, ids) + "\n", file=out)
        print(struck.table + "\n", file=out)
        print(checks_table(checks) + "\n", file=out)
        if options.cleanup:
            removed = conn.execute(queries.FORGET_PREVIOUS_DRILL, {"queue": QUEUE}).rowcount
            conn.execute(queries.DROP_CHARGES)
            print(f"removed the drill's {removed} jobs and drill_charges (--cleanup)", file=out)
    ok = all(c.ok for c in checks)
    if ok:
        shutil.rmtree(logs, ignore_errors=True)
        print("every invariant holds", file=out)
    else:
        broken = ", ".join(c.name for c in checks if not c.ok)
        print(f"INVARIANTS BROKEN: {broken}; node logs in {logs}", file=out)
    return 0 if ok else 1


@dataclass(frozen=True)
class Struck:
    """What the drill did to the fleet: the checks of it (beside the jobs') and its table."""

    checks: list[Check]
    table: str


def _break_nodes(
    url: str,
    config: Settings,
    fleet: Sequence[LocalNode],
    ids: Mapping[str, list[int]],
    options: DrillOptions,
    rnd: random.Random,
    err: TextIO,
) -> Struck:
    """Kill workers and whole nodes, pause one past its lease; time each recovery."""
    with connect(url, autocommit=True, config=config) as conn:
        drill = Drill(conn, fleet, plan(options.duration, rnd), rnd, options.duration, err)
        drill.run()
        exits = {node.name: node.stop(GRACE_SECONDS + 5) for node in fleet}
        checks = fault_checks(conn, drill.faults, exits, drill.unexpected, RECOVERY_BOUND_SECONDS)
    return Struck(checks, faults_table(drill.faults, drill.started))


def _fail_over(
    url: str,
    config: Settings,
    fleet: Sequence[LocalNode],
    ids: Mapping[str, list[int]],
    options: DrillOptions,
    rnd: random.Random,
    err: TextIO,
) -> Struck:
    """Run the failover command a quarter of the way in; time each node's return."""
    assert options.failover is not None
    drill = FailoverDrill(url, config, fleet, options.failover, options.duration, err)
    try:
        timeline = drill.run()
    finally:
        drill.close()
    exits = {node.name: node.stop(GRACE_SECONDS + 5) for node in fleet}
    checks = [drill.command_check(), clean_exits(exits, drill.unexpected)]
    if timeline is None:
        missing = Check("the database came back writable", False, "it never did, as seen here")
        return Struck([*checks, missing], "no failover timeline: the database never came back")
    every = [i for kind_ids in ids.values() for i in kind_ids]
    with connect(url, autocommit=True, config=config) as conn:
        timeline.first_claims = first_claims(conn, every, timeline.since)
    names = [node.name for node in fleet]
    checks.append(back_in_time(timeline, names, FAILOVER_BOUND_SECONDS))
    table = timeline_table(timeline)
    return Struck(checks, f"{table}\n{timeline.running_at_kill} jobs running at the failover")


class Drill:
    """The drill's loop: strike faults on schedule, watch recovery, report progress, and
    wait for every job to end."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        fleet: Sequence[LocalNode],
        faults: list[Fault],
        rnd: random.Random,
        duration: float,
        err: TextIO,
    ) -> None:
        self.conn = conn
        self.fleet = fleet
        self.faults = faults
        self.duration = duration
        self.err = err
        self.chaos = Chaos(conn, fleet, rnd, PAUSE_SECONDS)
        self.unexpected: list[str] = []
        self.started = time.monotonic()
        # Past this, stop waiting: the invariants will say what did not finish.
        self.give_up = duration + PAUSE_SECONDS + max(60.0, duration)

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=self.err, flush=True)

    def run(self) -> None:
        for node in self.fleet:
            node.start()
        self.say(f"started {', '.join(n.name for n in self.fleet)}; logs in {self.fleet[0].logs}")
        pending = list(self.faults)
        next_progress = 0.0
        while True:
            now = time.monotonic()
            elapsed = now - self.started
            self._tell(self.chaos.resume_due(now) + self.chaos.watch(now))
            self._restart_exited()
            recovering = any(f.recovering for f in self.faults)
            if pending and elapsed >= pending[0].at and not (recovering and pending[0].hits_node):
                self.say(self.chaos.strike(pending.pop(0)))
                continue
            states = dict(self.conn.execute(queries.STATE_COUNTS, {"queue": QUEUE}).fetchall())
            unfinished = states.get("queued", 0) + states.get("running", 0)
            settled = not (pending or recovering or self.chaos.pausing)
            finished = settled and elapsed >= self.duration and not unfinished
            if elapsed >= next_progress or finished:
                self._progress(states)
                next_progress += PROGRESS_EVERY_SECONDS
            if finished:
                return
            if elapsed > self.give_up:
                self.say(f"giving up after {elapsed:.0f} s: {unfinished} jobs not finished")
                return
            time.sleep(TICK_SECONDS)

    def _tell(self, lines: list[str]) -> None:
        for line in lines:
            self.say(line)

    def _progress(self, states: dict[str, int]) -> None:
        struck = sum(f.struck is not None for f in self.faults)
        self.say(
            "  ".join(f"{s} {states.get(s, 0)}" for s in ("queued", "running", "succeeded", "dead"))
            + f"  | faults {struck}/{len(self.faults)}"
        )

    def _restart_exited(self) -> None:
        """A node that exits on its own breaks an invariant; restart it so K stay up."""
        for node in self.fleet:
            code = node.exit_code()
            if code is not None:
                self.unexpected.append(f"{node.name} exited with {code}")
                self.say(f"node {node.name} exited by itself with {code}: restarting it")
                node.restart()


def _refuse_foreign_jobs(conn: psycopg.Connection[Any], yes: bool) -> None:
    if yes or conn.execute(queries.JOBS_TABLE_EXISTS).fetchone() != (True,):
        return
    foreign = count(conn, queries.FOREIGN_JOBS, {"queue": QUEUE})
    if foreign:  # a refusal of the command as given: exit 2, like any bad input
        raise ValueError(
            f"this database holds {foreign} jobs outside the drill's queue {QUEUE!r}: the "
            "drill starts real nodes on it, which take part in its maintenance. Point "
            "JOBFLEET_DATABASE_URL at a scratch database, or pass --yes to run it here anyway"
        )


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the drill as Ctrl-C does, so its nodes are cleaned up either way."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous: Callable[[int, FrameType | None], Any] | int | None
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
