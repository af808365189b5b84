"""The drill's local supervisors: real `jobfleet supervisor` processes, each in its own
process group so a whole node (supervisor and workers) can be killed or paused at once."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from jobfleet.supervisor.children import child_pids
from jobfleet.supervisor.drill.workload import QUEUE

HANDLERS = "jobfleet.supervisor.drill.handlers"
_PR_SET_PDEATHSIG = 1


def jobfleet_command() -> str:
    """The console script of this installation (beside the interpreter in a venv)."""
    beside = Path(sys.executable).with_name("jobfleet")
    found = str(beside) if beside.exists() else shutil.which("jobfleet")
    if found is None:
        raise FileNotFoundError("cannot find the `jobfleet` command to start drill nodes")
    return found


def _die_with_parent() -> None:
    # A drill killed outright must not leave its nodes running jobs against the database.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class LocalNode:
    """One slot of the fleet; a killed node comes back in the same slot under a new name, so
    its jobs are recovered by the lease reaper as a lost host's would be."""

    slot: int
    env: dict[str, str]
    logs: Path
    workers: int
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"drill-{self.slot}" + (f"-r{self.generation}" if self.generation else "")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        argv = [jobfleet_command(), "supervisor", "--node-name", self.name]
        argv += ["--workers", str(self.workers), "--queues", QUEUE, "--handlers", HANDLERS]
        with open(self.logs / f"{self.name}.log", "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.names.append(self.name)
        self.paused = False

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def children(self) -> list[int]:
        return child_pids(self.pid)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def pause(self) -> None:
        self.signal_group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal_group(signal.SIGCONT)
        self.paused = False

    def restart(self) -> None:
        """A new supervisor in this slot, under the next name."""
        self.generation += 1
        self.start()

    def kill_and_restart(self) -> None:
        self.signal_group(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)
        self.restart()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM (drain) and wait; the exit code, or None if it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(10)
            return None

    def kill(self) -> None:
        """Last-resort cleanup: the whole group, even a stopped one."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
