"""Real `jobfleet supervisor` processes for the scenarios: start, wait, kill, measure CPU.

Each runs in its own process group (a node is a supervisor and its forked workers), logging
to a file that is shown when it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from jobfleet import polling
from jobfleet.errors import JobfleetError
from jobfleet.node_process import NodeProcess

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(JobfleetError):
    """A scenario could not run as designed (a node failed, a deadline passed)."""


class BenchNode:
    """One node a scenario starts: a NodeProcess with a deadline on its end and a CPU meter."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        workers: int,
        burst: bool = False,
        extra_args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        log_dir: Path,
    ) -> None:
        self.name = name
        args = ["--workers", str(workers), *(["--burst"] if burst else []), *extra_args]
        self.process = NodeProcess(
            name,
            *args,
            log_path=log_dir / f"{name}.log",
            env={**os.environ, **(env or {}), "JOBFLEET_DATABASE_URL": url},
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def started(self) -> float:
        return self.process.started  # time.perf_counter() at the start

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> float:
        """Wait for a clean exit; return the seconds since start. A failure says why."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise BenchError(
                f"node {self.name} did not finish within {timeout:g} s:\n{self.process.log_tail()}"
            ) from None
        elapsed = time.perf_counter() - self.process.started
        if code != 0:
            raise BenchError(f"node {self.name} exited {code}:\n{self.process.log_tail()}")
        return elapsed

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM: the node finishes what it runs and exits."""
        self.signal_stop()
        self.wait(timeout)

    def signal_stop(self) -> None:
        """SIGTERM without waiting (many nodes stop at once; `wait` for each after)."""
        self.process.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.process.kill()

    def children(self) -> list[int]:
        return self.process.children()

    def cpu_seconds(self) -> float:
        """User + system CPU of the supervisor and its live children so far."""
        return sum(process_cpu_seconds(pid) for pid in [self.pid, *self.children()])


def process_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command (which may hold spaces) start after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


@contextmanager
def node_logs() -> Iterator[Path]:
    """A directory for the scenario's node logs, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="jobfleet-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def started_nodes() -> Iterator[list[BenchNode]]:
    """Collects the nodes a scenario starts and kills whatever still runs at the end."""
    nodes: list[BenchNode] = []
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.running():
                node.kill()


def wait_until(
    check: Callable[[], object], timeout: float, what: str, pause: float = 0.005
) -> None:
    """Poll `check()` (every `pause` seconds: the moment matters here) until it is truthy;
    BenchError after `timeout` seconds."""
    polling.wait_until(check, timeout, what, pause=pause, error=BenchError)
