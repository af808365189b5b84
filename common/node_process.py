"""A `jobfleet supervisor` started from outside, as a user would start one: for the drill, the
benchmarks and the tests, which start, pause, kill and watch whole nodes."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from jobfleet import processes
from jobfleet.errors import JobfleetError


def jobfleet_command() -> str:
    """The `jobfleet` script of this installation (beside the interpreter), else on PATH."""
    beside = Path(sys.executable).with_name("jobfleet")
    if beside.exists():
        return str(beside)
    found = shutil.which("jobfleet")
    if found is None:
        raise JobfleetError("cannot find the `jobfleet` command to start supervisors with")
    return found


class NodeProcess:
    """`jobfleet supervisor --node-name NAME ARGS...` in its own process group (a node is a
    supervisor and its forked workers: killed or paused together), its output in `log_path`.
    With `die_with_parent`, it is killed when the process that started it dies; `command` is
    another installation's `jobfleet` (a previous release's, for the rolling upgrade test)."""

    def __init__(
        self,
        name: str,
        *args: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,  # a drill or bench killed outright leaves no node behind
        command: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        argv = [command or jobfleet_command(), "supervisor", "--node-name", name, *args]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=processes.die_with_parent if die_with_parent else None,
            )
        self.started = time.perf_counter()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().strip().splitlines()[-lines:])

    def children(self) -> list[int]:
        return processes.child_pids(self.pid)

    def signal(self, sig: int) -> None:
        """To the supervisor alone (its workers hear from it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """To the whole node: the supervisor and every worker."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """The exit code, as soon as the process exits: the bench times exits with it, and
        Popen.wait(timeout) looks every 50 ms once it has waited a while (a drain timed start
        to exit was up to 50 ms longer than it ran). A pidfd is readable the moment the
        process exits; TimeoutExpired as Popen.wait."""
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except OSError:  # reaped already (or no pidfd here): Popen knows
            return self.proc.wait(timeout)
        try:
            exited, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not exited:
            raise subprocess.TimeoutExpired(self.proc.args, timeout)
        return self.proc.wait()

    def kill(self) -> None:
        """kill -9 of the whole node (a stopped one too), and reap the supervisor."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, timeout: float) -> int | None:
        """SIGTERM (a drain) and wait: the exit code, or None if it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.signal_group(signal.SIGCONT)  # a paused node cannot drain
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
