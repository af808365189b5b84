"""What the supervisor sees of a live child, gathered from its slot for the decisions
(decisions.py): its heartbeat and every job it runs, with each one's timeout and deadlines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jobfleet.jobs import ClaimedJob
from jobfleet.processes import cpu_seconds
from jobfleet.supervisor.children import Child
from jobfleet.supervisor.decisions import ChildFacts, RunningJob
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.slots import SlotTable

# A child whose beat is this late (seconds) has its CPU time looked at, once a watch round.
SILENCE_CHECKED_AFTER = 1.0


def timeout_of(job: ClaimedJob, handlers: Mapping[str, HandlerSpec]) -> float | None:
    """The job's own timeout, else its handler's (for jobs enqueued before any node published
    the type's defaults)."""
    if job.timeout:
        return job.timeout
    spec = handlers.get(job.type)
    return spec.timeout if spec else None


def child_facts(
    child: Child,
    slots: SlotTable,
    handlers: Mapping[str, HandlerSpec],
    *,
    now: float,
    stall_ended: float,
    kill_grace: float,
) -> ChildFacts:
    view = slots.read(child.slot)
    running = []
    main = child.assigned.get(view.job_id) if view.job_id else None
    if main is not None:
        running.append(RunningJob(main.id, view.started, timeout_of(main, handlers)))
    for entry in slots.running_entries(child.slot):
        job = child.beside.get(entry.job_id)
        if job is None or entry.finished or job.attempt != entry.attempt:
            continue
        spec = handlers.get(job.type)
        running.append(
            RunningJob(
                job.id,
                entry.started,
                timeout_of(job, handlers),
                # The worker cancels an async job's task at its timeout: a kill only if not.
                timeout_grace=kill_grace if spec is not None and spec.is_async else 0.0,
                cancel_by=child.cancel_by.get(job.id),
            )
        )
    if now - view.heartbeat > SILENCE_CHECKED_AFTER:  # not beating: is it working?
        cpu = cpu_seconds(child.pid)
        if cpu is not None and cpu > child.cpu_seconds:
            if child.cpu_seconds:  # the first look is a baseline, no sign of work yet
                child.cpu_grew_at = now
            child.cpu_seconds = cpu
    return ChildFacts(now, view.heartbeat, stall_ended, tuple(running), child.cpu_grew_at)


def running_counts(children: Iterable[Child], slots: SlotTable) -> tuple[int, int]:
    """How many of these children run a job now, and how many jobs they run (their main
    threads' and those beside them)."""
    busy = running = 0
    for child in children:
        jobs = bool(slots.read(child.slot).job_id) + sum(
            not e.finished for e in slots.running_entries(child.slot)
        )
        busy += bool(jobs)
        running += jobs
    return busy, running
