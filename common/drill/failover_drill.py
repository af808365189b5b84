"""`jobfleet drill --failover COMMAND`: the fleet on an HA database while COMMAND fails the
primary over (`pg_autoctl perform failover`, `patronictl failover`, a cloud provider's CLI, or
a kill and a `pg_ctl promote`). The drill runs the command a quarter of the way in, watches
the database go and come back through JOBFLEET_DATABASE_URL (a multi-host URL with
target_session_attrs=read-write), and times each node's first claim on the new primary."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from typing import Any, TextIO

import psycopg

from jobfleet.db import connect
from jobfleet.drill import queries
from jobfleet.drill.failover import Timeline, clock
from jobfleet.drill.invariants import Check
from jobfleet.drill.nodes import LocalNode
from jobfleet.drill.workload import QUEUE
from jobfleet.errors import JobfleetError
from jobfleet.settings import Settings

# Of the duration and of the jobs: the failover lands while the nodes are at work and jobs
# still arrive (a node that cannot connect when it starts exits, as a misconfigured one does).
STRIKE_SHARE = 0.25
TICK_SECONDS = 0.1
PROGRESS_EVERY_SECONDS = 2.0
COMMAND_SECONDS = 600.0  # a failover manager that has not finished by then has failed
UNSEEN_SECONDS = 60.0  # after the command ended, with the database neither gone nor moved
WRITABLE_AGAIN = "writable again (first seen)"


def server_identity(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Which server, and which start of it, a connection reached: a promoted standby or a
    restarted primary differs from the primary the drill began on."""
    row = conn.execute(queries.SERVER_IDENTITY).fetchone()
    return tuple(row) if row else ()


def strike_due(elapsed: float, duration: float, states: dict[str, int] | None) -> bool:
    """A quarter of the way in, and a quarter of the jobs ended (`states`: jobs by state; None
    when the database did not answer): the nodes are at work."""
    if states is None or elapsed < STRIKE_SHARE * duration:
        return False
    ended = sum(n for s, n in states.items() if s not in ("queued", "running"))
    return ended >= STRIKE_SHARE * sum(states.values())


class FailoverDrill:
    """Starts the fleet, runs the failover command once, and waits for every job to end,
    reading the database through the URL (reconnecting, as the nodes do)."""

    def __init__(
        self,
        url: str,
        config: Settings,
        fleet: Sequence[LocalNode],
        command: str,
        duration: float,
        err: TextIO,
    ) -> None:
        self.url = url
        self.config = config
        self.fleet = fleet
        self.command = command
        self.duration = duration
        self.err = err
        self.conn: psycopg.Connection[Any] | None = None
        self.started = time.monotonic()
        self.give_up = duration + COMMAND_SECONDS + max(60.0, duration)
        self.process: subprocess.Popen[bytes] | None = None
        self.identity: tuple[Any, ...] = ()
        self.timeline: Timeline | None = None
        self.seen_down = False
        self.back = False  # the database took writes again after going (or moved)
        self.command_ended: float | None = None
        self.unexpected: list[str] = []

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=self.err, flush=True)

    def run(self) -> Timeline | None:
        """Run the drill; the failover's timeline (None if the database never came back)."""
        for node in self.fleet:
            node.start()
        self.say(f"started {', '.join(n.name for n in self.fleet)}; logs in {self.fleet[0].logs}")
        next_progress = 0.0
        while True:
            elapsed = time.monotonic() - self.started
            self._watch_nodes()
            states = self._look()
            if self.process is None and strike_due(elapsed, self.duration, states):
                self._strike()
            if self.timeline is not None and not self.back:
                self._watch_failover(states is not None)
            unfinished = (
                None if states is None else states.get("queued", 0) + states.get("running", 0)
            )
            done = self.back and self.process is not None and self.process.poll() is not None
            finished = done and elapsed >= self.duration and unfinished == 0
            if elapsed >= next_progress or finished:
                self._progress(states)
                next_progress += PROGRESS_EVERY_SECONDS
            if finished:
                return self.timeline
            if self._command_ended_unseen():
                self.say("the failover command ended, and the database never went or moved")
                return None
            if elapsed > self.give_up:
                self.say(f"giving up after {elapsed:.0f} s: {unfinished} jobs not finished")
                return self.timeline if self.back else None
            time.sleep(TICK_SECONDS)

    def command_check(self) -> Check:
        code = None if self.process is None else self.process.poll()
        return Check(
            "the failover command ran and succeeded",
            code == 0,
            f"{self.command!r} exited {code}" if code is not None else "it never ended",
        )

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.conn is not None:
            self.conn.close()

    def _strike(self) -> None:
        conn = self._connection()
        if conn is None:
            raise JobfleetError("the database was unreachable before the failover was run")
        self.identity = server_identity(conn)
        at = clock(conn)
        self.timeline = Timeline(down=at, since=at, since_label=WRITABLE_AGAIN)
        self.timeline.running_at_kill = int(
            (conn.execute(queries.RUNNING_COUNT, {"queue": QUEUE}).fetchone() or (0,))[0]
        )
        self.say(f"running the failover command: {self.command}")
        # Its output goes to stderr with the drill's progress (fd 2), never into the report.
        self.process = subprocess.Popen(self.command, shell=True, stdout=2)

    def _command_ended_unseen(self) -> bool:
        """The command ended UNSEEN_SECONDS ago and the drill's connection still reaches the
        primary it began on (a failover that failed, or a URL that cannot follow one)."""
        if self.process is None or self.process.poll() is None or self.seen_down or self.back:
            return False
        if self.command_ended is None:
            self.command_ended = time.monotonic()
        return time.monotonic() - self.command_ended > UNSEEN_SECONDS

    def _watch_failover(self, answered: bool) -> None:
        """Down once a look fails or reaches another server; back at the first look after."""
        assert self.timeline is not None
        conn = self.conn
        if not answered or conn is None:
            if not self.seen_down:
                self.say("the database stopped answering through the URL")
            self.seen_down = True
            return
        moved = server_identity(conn) != self.identity
        if moved or self.seen_down:
            self.timeline.since = clock(conn)
            self.back = True
            where = "another server" if moved else "the same server"
            self.say(f"the database takes writes again, on {where}")

    def _look(self) -> dict[str, int] | None:
        conn = self._connection()
        if conn is None:
            return None
        try:
            rows = conn.execute(queries.STATE_COUNTS, {"queue": QUEUE}).fetchall()
        except psycopg.Error:
            self._drop()
            return None
        return {str(s): int(n) for s, n in rows}

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        try:
            self.conn = connect(self.url, autocommit=True, config=self.config)
        except JobfleetError:
            self.conn = None
        return self.conn

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _progress(self, states: dict[str, int] | None) -> None:
        if states is None:
            self.say("the database does not answer")
            return
        self.say(
            "  ".join(f"{s} {states.get(s, 0)}" for s in ("queued", "running", "succeeded", "dead"))
        )

    def _watch_nodes(self) -> None:
        """A node must ride through the failover: one that exits breaks an invariant."""
        for node in self.fleet:
            code = node.exit_code()
            if code is not None:
                self.unexpected.append(f"{node.name} exited with {code}")
                self.say(f"node {node.name} exited by itself with {code}: restarting it")
                node.restart()
