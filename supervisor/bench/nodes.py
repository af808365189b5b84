"""Real `jobfleet supervisor` processes for the scenarios: start, wait, kill, measure CPU.

Each runs in its own process group (a node is a supervisor and its forked workers), logging
to a file that is shown when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from jobfleet.errors import JobfleetError
from jobfleet.supervisor.children import child_pids

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def jobfleet_command() -> str:
    """The `jobfleet` script of this installation (beside the interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "jobfleet"
    if beside.exists():
        return str(beside)
    found = shutil.which("jobfleet")
    if found is None:
        raise JobfleetError("cannot find the `jobfleet` command to start supervisors with")
    return found


class BenchError(JobfleetError):
    """A scenario could not run as designed (a node failed, a deadline passed)."""


class NodeProcess:
    """One `jobfleet supervisor` in its own process group."""

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
        self.log_path = log_dir / f"{name}.log"
        argv = [jobfleet_command(), "supervisor", "--node-name", name, "--workers", str(workers)]
        argv += ["--burst"] if burst else []
        argv += list(extra_args)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {}), "JOBFLEET_DATABASE_URL": url},
                start_new_session=True,
            )
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def wait(self, timeout: float) -> float:
        """Wait for a clean exit; return the seconds since start. A failure says why."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(
                f"node {self.name} did not finish within {timeout:g} s:\n{self.log_tail()}"
            ) from None
        elapsed = time.perf_counter() - self.started
        if code != 0:
            raise BenchError(f"node {self.name} exited {code}:\n{self.log_tail()}")
        return elapsed

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM: the node finishes what it runs and exits."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self.wait(timeout)

    def kill(self) -> None:
        """kill -9 of the whole node: the supervisor and its workers."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def children(self) -> list[int]:
        return child_pids(self.pid)

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
def started_nodes() -> Iterator[list[NodeProcess]]:
    """Collects the nodes a scenario starts and kills whatever still runs at the end."""
    nodes: list[NodeProcess] = []
    try:
        yield nodes
    finally:
        for node in nodes:
            if node.proc.poll() is None:
                node.kill()


def wait_until(
    check: Callable[[], object], timeout: float, what: str, pause: float = 0.005
) -> None:
    """Poll `check()` until it is truthy; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)
