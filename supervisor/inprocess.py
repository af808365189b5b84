"""A single-process runner: claims, runs and records jobs in the supervisor's own process.

The lifecycle end to end without forking; the forked fleet replaces it for `--workers` > 1.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

from jobfleet.db import connect
from jobfleet.jobs import AttemptResult
from jobfleet.log import get_logger
from jobfleet.settings import Settings
from jobfleet.store import claim, record, release
from jobfleet.supervisor.node import Node
from jobfleet.worker.execute import execute

log = get_logger("jobfleet.supervisor")

BATCH = 50
IDLE_POLL_MIN, IDLE_POLL_MAX = 0.05, 1.0


class InProcessRunner:
    def __init__(self, node: Node, config: Settings, *, burst: bool) -> None:
        self.node = node
        self.config = config
        self.burst = burst
        self.stopping = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        conn = connect(autocommit=True, config=self.config)
        with conn:
            self.node.register(conn)
            log.info("node started", extra={"node": self.node.name, "types": self.node.types})
            processed = 0
            idle = IDLE_POLL_MIN
            next_beat = time.monotonic() + self.config.node_heartbeat
            while not self.stopping:
                jobs = claim(
                    conn,
                    node=self.node.name,
                    types=self.node.types,
                    queues=self.node.queues,
                    limit=BATCH,
                    lease_seconds=self.config.lease_seconds,
                )
                if not jobs:
                    if self.burst and self.node.remaining(conn) == 0:
                        break
                    time.sleep(idle)
                    idle = min(idle * 2, IDLE_POLL_MAX)
                else:
                    idle = IDLE_POLL_MIN
                    processed += self._run_batch(conn, jobs)
                if time.monotonic() >= next_beat:
                    self.node.heartbeat(conn, busy=0)
                    next_beat = time.monotonic() + self.config.node_heartbeat
            self.node.unregister(conn)
            log.info("node stopped", extra={"node": self.node.name, "processed": processed})
        return 0

    def _run_batch(self, conn: object, jobs: list) -> int:  # type: ignore[type-arg]
        results: list[AttemptResult] = []
        done = 0
        for index, job in enumerate(jobs):
            if self.stopping:
                release(conn, jobs[index:])
                break
            results.append(
                execute(job, self.node.handlers, max_result_bytes=self.config.max_result_bytes)
            )
            done += 1
        outcome = record(conn, self.node.name, results, self.config)
        if outcome.late:
            log.warning(
                "late results dropped", extra={"node": self.node.name, "late": outcome.late}
            )
        return done
