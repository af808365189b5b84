"""The supervisor: one process per node, the only parent of its workers.

One asyncio loop, one object that keeps the node's state (running, draining, stopped), its
signals and its tasks, and holds its parts:
  pool      - the worker children: fork, watch, kill, reap, settle, hand out jobs (pool.py,
              what it says to them in child_talk.py, what it decides in decisions.py)
  lanes     - the hot path: write outcomes in batches, claim for the children's free room
              (lanes.py), from the outbox (outbox.py)
  control   - node heartbeat, lease renewal; as leader, the lease reaper and the pruner;
              between them LISTEN (new jobs, cancel requests), or a third lane's share of
              the hot path while the node is busy (control.py, maintenance/)
  tally     - what the node counted, published to /metrics once a second (tally.py)
Parts report to the supervisor through two callbacks: `_changed` (something the drain may
wait for happened) and `begin_drain`. Signal handlers set state and wake the loops; the only
one that does more is TTIN/TTOU, which converges the pool to the new count at once.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from enum import Enum
from typing import Any

from jobfleet import collector
from jobfleet.log import get_logger
from jobfleet.metrics import directory, write_snapshot
from jobfleet.settings import Settings
from jobfleet.supervisor.cadence import until_next
from jobfleet.supervisor.control import Control
from jobfleet.supervisor.http_child import HttpChild
from jobfleet.supervisor.lanes import Lanes
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.pool import WorkerPool
from jobfleet.supervisor.tally import Tally
from jobfleet.supervisor.waker import Waker

log = get_logger("jobfleet.supervisor")

# After the grace period, how long a draining node keeps trying to write what it holds.
SHUTDOWN_FLUSH_SECONDS = 10.0
# How often counts reach /metrics; the HTTP child's restarts are checked as often.
METRICS_SECONDS = 1.0


class State(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # no new claims; children finish what they hold
    STOPPED = "stopped"


class Supervisor:
    def __init__(
        self,
        node: Node,
        config: Settings,
        url: str,
        *,
        workers: int,
        burst: bool,
        http: list[HttpChild] | None = None,
    ) -> None:
        self.node = node
        self.config = config
        # locked_by names this run of the node: a restart under the same name is a new holder.
        self.holder = f"{node.name}/{secrets.token_hex(4)}"
        self.state = State.RUNNING
        self.exit_code = 0
        self.sigints = 0
        self.stopped = asyncio.Event()
        self.grace_deadline: float | None = None
        self.http = http or []
        self.db_errors_seen: dict[str, int] = {}
        self.snapshot_written: tuple[str, dict[str, Any]] | None = None  # publish_metrics
        self.waker = Waker()
        self.tally = Tally(node.name)
        self.outbox = Outbox(on_arrival=self.waker.wake, max_error_bytes=config.max_error_bytes)
        self.pool = WorkerPool(
            node,
            config,
            workers=workers,
            database_url=url,
            holder=self.holder,
            outbox=self.outbox,
            tally=self.tally,
            waker=self.waker,
            on_change=self._changed,
            on_other_exit=self.on_other_exit,
        )
        self.lanes = Lanes(
            node,
            config,
            url,
            holder=self.holder,
            burst=burst,
            pool=self.pool,
            outbox=self.outbox,
            tally=self.tally,
            waker=self.waker,
            on_change=self._changed,
            on_burst_done=self.begin_drain,
        )
        self.control = Control(
            node,
            config,
            url,
            holder=self.holder,
            pool=self.pool,
            lanes=self.lanes,
            outbox=self.outbox,
            gauges_wanted=bool(self.http),
        )

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"node": self.node.name, **extra}

    # -- the life of the node --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, action in (
            (signal.SIGTERM, self.handle_term),
            (signal.SIGINT, self.handle_int),
            (signal.SIGQUIT, self.handle_quit),
            (signal.SIGCHLD, self.pool.reap),
            (signal.SIGTTIN, self.handle_ttin),
            (signal.SIGTTOU, self.handle_ttou),
        ):
            loop.add_signal_handler(sig, action)
        log.info(
            "node started",
            extra=self._fields(
                workers=self.pool.desired, types=self.node.types, queues=self.node.queues or "*"
            ),
        )
        collector.settle()  # before the first fork: the children inherit it
        # Children start up while the connections are made: the loops below all begin at once.
        self.pool.manage_children()
        for http in self.http:
            http.start()
        tasks = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                *((db.name, self.lanes.lane_loop(db)) for db in self.lanes.dbs),
                ("watch", self.pool.watch_loop()),
                ("control", self.control.loop()),
                ("metrics", self.metrics_loop()),
            )
        ]
        for task in tasks:
            task.add_done_callback(self._task_ended)
        try:
            await self.stopped.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # At once: the API's processes share a socket, open until the last one is gone.
            # (No last publish of metrics: their directory goes too.)
            await asyncio.gather(*(http.stop() for http in self.http))
            for http in self.http:
                http.close()
            await self.control.stop()
            await self.lanes.close()

        log.info(
            "node stopped",
            extra=self._fields(
                succeeded=self.lanes.finished_ok,
                failed=self.lanes.finished_bad,
                cancelled=self.lanes.finished_cancelled,
                late_results=self.lanes.late_results,
            ),
        )
        return self.exit_code

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        """A loop that ends by itself is a bug: say so loudly and stop the node (its leases
        bring its jobs back) rather than run on half-working."""
        if task.cancelled() or self.state is State.STOPPED:
            return
        log.critical(
            "a supervisor loop failed; stopping the node",
            exc_info=task.exception(),
            extra=self._fields(loop=task.get_name()),
        )
        self.exit_code = 1
        self.handle_quit()

    # -- signals: set state, wake the loops --

    def handle_term(self) -> None:
        self.begin_drain("SIGTERM")

    def handle_int(self) -> None:
        self.sigints += 1
        if self.sigints == 1:
            self.begin_drain("SIGINT (again for a fast exit)")
        else:
            self.handle_quit()

    def handle_quit(self) -> None:
        """Fast exit: kill the children and go; their leases bring the jobs back."""
        log.warning(
            "fast exit: killing workers, leases will requeue their jobs", extra=self._fields()
        )
        self.pool.kill_all()
        self.state = State.STOPPED
        self.stopped.set()

    def handle_ttin(self) -> None:
        self._want_workers(self.pool.desired + 1)

    def handle_ttou(self) -> None:
        self._want_workers(max(1, self.pool.desired - 1))

    def _want_workers(self, count: int) -> None:
        self.pool.desired = count
        log.info("workers wanted", extra=self._fields(workers=count))
        self.pool.manage_children()

    def begin_drain(self, why: str) -> None:
        if self.state is not State.RUNNING:
            return
        self.state = State.DRAINING
        self.grace_deadline = time.monotonic() + self.config.grace_seconds
        log.info(
            "draining: no new jobs; waiting for running ones",
            extra=self._fields(reason=why, grace_seconds=self.config.grace_seconds),
        )
        self.pool.drain(self.grace_deadline)
        self.waker.wake()

    def _changed(self) -> None:
        """Once draining and every child is gone and everything is written, stop (never
        with a claim or a write in flight: its jobs would be left to their leases)."""
        lanes = self.lanes
        if (
            self.state is not State.DRAINING
            or self.pool.children
            or lanes.claims_in_flight()
            or lanes.flushing
        ):
            return
        if self.outbox:
            deadline = (self.grace_deadline or 0) + SHUTDOWN_FLUSH_SECONDS
            if time.monotonic() < deadline:
                return
            log.error(
                "could not write every outcome before exiting; leases will requeue those jobs",
                extra=self._fields(unwritten=self.outbox.waiting),
            )
            self.exit_code = 1
        self.state = State.STOPPED
        self.stopped.set()

    # -- metrics and the HTTP child --

    async def metrics_loop(self) -> None:
        while True:
            # On the idle loops' grid (cadence.py): an idle node wakes once for this and the
            # watch of its children.
            await asyncio.sleep(until_next(METRICS_SECONDS, time.monotonic()))
            self.publish_metrics()
            for http in self.http:
                if self.state is State.RUNNING:
                    http.restart_if_due()

    def publish_metrics(self) -> None:
        """Counts to the metric files; the node's gauges to the snapshot /metrics serves."""
        for db in (*self.lanes.dbs, self.control.db):
            new = db.errors - self.db_errors_seen.get(db.name, 0)
            if new:
                self.tally.database_errors[db.name] += new
                self.db_errors_seen[db.name] = db.errors
        path = directory()
        if path is None:
            return
        self.tally.publish()
        busy, running = self.pool.busy()
        snapshot = {
            "node": self.node.name,
            "workers": len(self.pool.staying_children()),
            "busy": busy,
            "running": running,
            "leader": int(self.control.is_leader),
            **self.control.gauges,
        }
        # Written when it changed (or its directory did): an idle node's gauges stay put, and
        # rewriting the file every second was a tenth of its CPU.
        if (path, snapshot) != self.snapshot_written:
            write_snapshot(path, snapshot)
            self.snapshot_written = (path, snapshot)

    def on_other_exit(self, pid: int, status: int) -> None:
        """A reaped process that is not a worker: the HTTP child, restarted unless stopping."""
        for http in self.http:
            if http.pid == pid:
                http.on_exit(status, restart=self.state is State.RUNNING)
                self.tally.child_restarts["http"] += 1
