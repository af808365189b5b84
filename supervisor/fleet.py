"""The supervisor: one process per node, the only parent of its workers.

One asyncio loop, one object. Signals only set state and wake the loop. The loop's tasks:
  lane-N    - write outcomes in batches, claim for the children's free room, hand jobs out
              (lanes.py)
  watch     - kill children that are silent or over their job's timeout; converge the count
  control   - node heartbeat, lease renewal; as leader, the lease reaper and the pruner;
              between them LISTEN (new jobs, cancel requests), or a third lane's share of
              the hot path while the node is busy (maintenance/runner.py)
  metrics   - counts to /metrics once a second; restart a dead HTTP child
A child's death is noticed in `reap` (SIGCHLD) and settled in `_settle` once its last words
(outcomes still in its socket) are read: the job it was running is recorded with the cause.
Children are handled in pool.py; what waits to be written, in outbox.py.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections import deque
from enum import Enum
from typing import Any

from jobfleet.log import get_logger
from jobfleet.metrics import Tally, directory, write_snapshot
from jobfleet.settings import Settings
from jobfleet.supervisor.children import Child
from jobfleet.supervisor.database import ManagedConnection
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.http_child import HttpChild
from jobfleet.supervisor.lanes import IDLE_POLL_MIN, LANES, Lanes
from jobfleet.supervisor.maintenance import Maintenance
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.waker import Waker
from jobfleet.worker.slots import SlotTable

log = get_logger("jobfleet.supervisor")

# After the grace period, how long a draining node keeps trying to write what it holds.
SHUTDOWN_FLUSH_SECONDS = 10.0
# How often counts reach /metrics; the HTTP child's restarts are checked as often.
METRICS_SECONDS = 1.0


class State(Enum):
    RUNNING = "running"
    DRAINING = "draining"  # no new claims; children finish what they hold
    STOPPED = "stopped"


class Supervisor(Lanes):
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
        self.burst = burst
        self.desired = workers
        # locked_by names this run of the node: a restart under the same name is a new holder.
        self.holder = f"{node.name}/{secrets.token_hex(4)}"
        self.slots = SlotTable(max(64, 4 * workers))
        self.free_slots = list(range(self.slots.size))
        self.children: dict[int, Child] = {}
        self.state = State.RUNNING
        self.exit_code = 0
        self.dispatcher = Dispatcher()
        # Claims and outcomes share LANES connections (see lanes.py).
        self.lanes = [
            ManagedConnection(f"lane-{n + 1}", url, config, raw_json=True) for n in range(LANES)
        ]
        self.outbox = Outbox(on_arrival=self._wake, max_error_bytes=self.config.max_error_bytes)
        self.flushing = False
        self.claiming = 0  # jobs asked for by claims in flight
        self.idle_wait = IDLE_POLL_MIN
        self.next_poll = 0.0
        self.due_times: list[float] = []  # when known jobs fall due, soonest first
        self.due_unknown = True  # jobs scheduled before we listened: ask when the queue is dry
        self.db_clock_offset = 0.0  # the database's clock less ours (see Maintenance)
        self.finished_ok = self.finished_bad = 0
        self.late_results = 0
        self.deaths: deque[float] = deque()
        self.stall_ended = 0.0  # when the supervisor last came back from a pause
        self.spawn_not_before = 0.0
        self.sigints = 0
        self.waker = Waker()  # the claim loop: room in the children, new work, state changes
        self.work_hint = True  # there may be work: claim without waiting out the idle backoff
        # Bumped by more_work_may_exist(); a burst node's look found nothing elsewhere as of
        # clear_epoch (see Lanes._burst_done).
        self.work_epoch, self.clear_epoch = 0, -1
        self.stopped = asyncio.Event()
        self.grace_deadline: float | None = None
        self.maintenance = Maintenance(self, url)
        self.tally = Tally(node.name)
        self.http = http or []
        self.db_errors_seen: dict[str, int] = {}

    # -- the life of the node --

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig, action in (
            (signal.SIGTERM, self.handle_term),
            (signal.SIGINT, self.handle_int),
            (signal.SIGQUIT, self.handle_quit),
            (signal.SIGCHLD, self.reap),
            (signal.SIGTTIN, self.handle_ttin),
            (signal.SIGTTOU, self.handle_ttou),
        ):
            loop.add_signal_handler(sig, action)
        log.info(
            "node started",
            extra=self._fields(
                workers=self.desired, types=self.node.types, queues=self.node.queues or "*"
            ),
        )
        # Children start up while the connections are made: the loops below all begin at once.
        self.manage_children()
        for http in self.http:
            http.start()
        tasks = [
            asyncio.create_task(coro, name=name)
            for name, coro in (
                *((db.name, self.lane_loop(db)) for db in self.lanes),
                ("watch", self.watch_loop()),
                ("control", self.maintenance.loop()),
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
            for http in self.http:  # (no last publish of metrics: their directory goes too)
                await http.stop()
                http.close()
            await self.maintenance.stop()
            for db in self.lanes:
                await db.close()

        log.info(
            "node stopped",
            extra=self._fields(
                succeeded=self.finished_ok,
                failed=self.finished_bad,
                late_results=self.late_results,
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

    def held_job_ids(self) -> list[int]:
        """Every job this run holds a lease on: handed to a child, or finished and waiting
        to be written."""
        ids = [job_id for child in self.children.values() for job_id in child.assigned]
        ids.extend(self.outbox.job_ids())
        return ids

    def _running(self) -> bool:
        return self.state is State.RUNNING

    # -- signals: set state, wake the loop, nothing more --

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
        for child in self.children.values():
            child.signal(signal.SIGKILL)
        self.state = State.STOPPED
        self.stopped.set()

    def handle_ttin(self) -> None:
        self.desired += 1
        log.info("workers wanted", extra=self._fields(workers=self.desired))
        self.manage_children()

    def handle_ttou(self) -> None:
        self.desired = max(1, self.desired - 1)
        log.info("workers wanted", extra=self._fields(workers=self.desired))
        self.manage_children()

    def begin_drain(self, why: str) -> None:
        if self.state is not State.RUNNING:
            return
        self.state = State.DRAINING
        self.grace_deadline = time.monotonic() + self.config.grace_seconds
        log.info(
            "draining: no new jobs; waiting for running ones",
            extra=self._fields(reason=why, grace_seconds=self.config.grace_seconds),
        )
        for child in self.children.values():
            self._ask_to_leave(child)
        self.waker.wake()

    def _check_drained(self) -> None:
        """Once draining and every child is gone and everything is written, stop (never
        with a claim or a write in flight: its jobs would be left to their leases)."""
        if self.state is not State.DRAINING or self.children or self.claiming or self.flushing:
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
            await asyncio.sleep(METRICS_SECONDS)
            self.publish_metrics()
            for http in self.http:
                if self.state is State.RUNNING:
                    http.restart_if_due()

    def publish_metrics(self) -> None:
        """Counts to the metric files; the node's gauges to the snapshot /metrics serves."""
        for db in (*self.lanes, self.maintenance.db):
            new = db.errors - self.db_errors_seen.get(db.name, 0)
            if new:
                self.tally.database_errors[db.name] += new
                self.db_errors_seen[db.name] = db.errors
        path = directory()
        if path is None:
            return
        self.tally.publish()
        write_snapshot(
            path,
            {
                "node": self.node.name,
                "workers": len(self.staying_children()),
                "busy": self.busy(),
                "leader": int(self.maintenance.is_leader),
                **self.maintenance.gauges,
            },
        )

    def on_other_exit(self, pid: int, status: int) -> None:
        """A reaped process that is not a worker: the HTTP child, restarted unless stopping."""
        for http in self.http:
            if http.pid == pid:
                http.on_exit(status, restart=self.state is State.RUNNING)
                self.tally.child_restarts["http"] += 1

    # -- cancellation, from the maintenance loop --
