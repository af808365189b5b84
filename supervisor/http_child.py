"""The supervisor's HTTP child: the API and /metrics in a process of their own, restarted
when it dies (with backoff, so a child that cannot start does not spin).

It is a fresh interpreter (posix_spawn), not a fork: the web stack is never imported into the
supervisor, and the child owns no copy of the supervisor's connections or loop. It runs in a
session of its own so a terminal's Ctrl-C reaches the supervisor alone, which decides; it
dies with the supervisor all the same (PR_SET_PDEATHSIG, see server.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from jobfleet.log import get_logger
from jobfleet.supervisor.children import describe_exit

log = get_logger("jobfleet.supervisor")

RESTART_MIN, RESTART_MAX = 0.5, 30.0
# A child that lived this long was healthy: its next restart starts from the shortest wait.
HEALTHY_AFTER = 60.0
STOP_WAIT_SECONDS = 8.0


@dataclass
class HttpChild:
    role: str  # "api" or "metrics"
    sock: socket.socket
    url: str
    pid: int | None = None
    started: float = 0.0
    restart_wait: float = RESTART_MIN
    restart_at: float | None = None
    restarts: int = 0
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        fd = self.sock.fileno()
        os.set_inheritable(fd, True)
        env = {**os.environ, "JOBFLEET_DATABASE_URL": self.url}
        argv = [sys.executable, "-m", "jobfleet.http", "--fd", str(fd)]
        argv += ["--role", self.role]
        self.pid = os.posix_spawn(sys.executable, argv, env, setsid=True)
        self.started = time.monotonic()
        self.restart_at = None
        self.exited.clear()
        log.info(
            "http child started", extra={"role": self.role, "port": self.port, "http_pid": self.pid}
        )

    def on_exit(self, status: int, *, restart: bool) -> None:
        """Account for the child's exit (seen by the supervisor's reaper); plan a restart."""
        (log.warning if restart else log.info)(
            "http child exited",
            extra={"role": self.role, "http_pid": self.pid, "cause": describe_exit(status)},
        )
        self.pid = None
        self.exited.set()
        if not restart:
            return
        now = time.monotonic()
        if now - self.started > HEALTHY_AFTER:
            self.restart_wait = RESTART_MIN
        self.restart_at = now + self.restart_wait
        self.restart_wait = min(self.restart_wait * 2, RESTART_MAX)
        self.restarts += 1

    def restart_if_due(self) -> None:
        if self.pid is None and self.restart_at is not None and time.monotonic() >= self.restart_at:
            self.start()

    async def stop(self) -> None:
        """SIGTERM (uvicorn finishes requests in flight), then SIGKILL if it lingers."""
        self.restart_at = None
        if self.pid is None:
            return
        pid = self.pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(self.exited.wait(), STOP_WAIT_SECONDS)
        except TimeoutError:
            if self.pid == pid:
                os.kill(pid, signal.SIGKILL)
                await asyncio.wait_for(self.exited.wait(), STOP_WAIT_SECONDS)

    def close(self) -> None:
        self.sock.close()
