"""Cancels of running jobs, as the worker pool carries them out: a job that runs beside its
child's main thread is told (its cooperative flag and a message; an async job's task is
cancelled) and its child killed after the kill grace unless the job ends by then; a main
thread's job gets its flag and its child is stopped at once (SIGTERM, SIGKILL after the grace).

A cancel no child can act on yet waits, looked at again at every tick of the pool's watch for
a lease's time: the request may come before its job's claim is back from the database (the
cancel's NOTIFY read during that very claim), or while a main thread's job waits behind
another in its child's batch. Not acted on then, it waited for a lease renewal, which reports
cancel requests too."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from jobfleet.jobs import ClaimedJob
from jobfleet.settings import Settings
from jobfleet.supervisor.child_talk import ChildTalk
from jobfleet.supervisor.children import Child
from jobfleet.worker import protocol
from jobfleet.worker.slots import SlotTable


class Cancels:
    def __init__(
        self,
        children: Mapping[int, Child],
        slots: SlotTable,
        talk: ChildTalk,
        config: Settings,
        stop_child: Callable[[Child, ClaimedJob], None],
    ) -> None:
        self.children = children  # the pool's, by pid
        self.slots = slots
        self.talk = talk
        self.config = config
        self.stop_child = stop_child  # kill a child over the cancelled job of its main thread
        # Cancels no child could act on yet: job id -> (attempt or None, when to give up).
        self.waiting: dict[int, tuple[int | None, float]] = {}

    def request(self, job_id: int, attempt: int | None = None) -> None:
        """Stop a running job someone cancelled, if one of our children runs it (now, or
        within a lease: see the module's docstring)."""
        if not self._cancel_held(job_id, attempt):
            give_up = time.monotonic() + self.config.lease_seconds
            self.waiting[job_id] = (attempt, give_up)

    def retry(self, now: float) -> None:
        """Act on the cancels that waited, now that children may hold their jobs."""
        for job_id, (attempt, give_up) in list(self.waiting.items()):
            if now >= give_up or self._cancel_held(job_id, attempt):
                del self.waiting[job_id]

    def _cancel_held(self, job_id: int, attempt: int | None) -> bool:
        """Cancel the job if a child of ours runs it; whether one did (or is being killed)."""
        for child in self.children.values():
            job = child.held(job_id)
            if job is None or (attempt is not None and job.attempt != attempt):
                continue
            if job.id in child.beside:
                self.slots.set_entry_cancel(child.slot, job.id, job.attempt)
                self.talk.send(child, (protocol.CANCEL, job.id, job.attempt))
                child.cancel_by[job.id] = time.monotonic() + self.config.kill_grace_seconds
                return True
            if child.kill is not None:
                return True
            if not self.slots.set_cancel(child.slot, job_id):
                return False  # waiting behind another job in its child
            self.stop_child(child, job)
            return True
        return False
