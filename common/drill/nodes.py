"""The drill's local supervisors: real `jobfleet supervisor` processes, each in its own
process group so a whole node (supervisor and workers) can be killed or paused at once."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from jobfleet.drill.workload import QUEUE
from jobfleet.node_process import NodeProcess

HANDLERS = "jobfleet.worker.drill_handlers"


@dataclass
class LocalNode:
    """One slot of the fleet; a killed node comes back in the same slot under a new name, so
    its jobs are recovered by the lease reaper as a lost host's would be."""

    slot: int
    env: dict[str, str]
    logs: Path
    workers: int
    generation: int = 0
    process: NodeProcess | None = None
    paused: bool = False
    names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"drill-{self.slot}" + (f"-r{self.generation}" if self.generation else "")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = NodeProcess(
            self.name,
            *("--workers", str(self.workers), "--queues", QUEUE, "--handlers", HANDLERS),
            log_path=self.logs / f"{self.name}.log",
            env=self.env,
            die_with_parent=True,
        )
        self.names.append(self.name)
        self.paused = False

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def children(self) -> list[int]:
        return [] if self.process is None else self.process.children()

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            self.process.signal_group(sig)

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
        self.kill()
        self.restart()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM (drain) and wait; the exit code, or None if it had to be killed."""
        if self.process is None:
            return None
        self.paused = False
        return self.process.stop(timeout)

    def kill(self) -> None:
        """Last-resort cleanup: the whole group, even a stopped one."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
