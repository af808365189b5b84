"""What becomes of each job a dead child held: a pure function of what the supervisor knows
(the child's jobs, its slot, how it ended, why it was killed). The pool (pool.py) gathers the
facts when it reaps the child and carries the answer out; tests/unit/ asks directly.

- The job its main thread ran, and each job it ran beside it and had not finished: recorded
  with the cause of the death (the kill's reason, or the way it ended).
- Jobs it finished whose outcomes died with it: recorded as crashed after the fact, since they
  ran (their attempts are spent, never handed back as if they had not).
- Jobs it was handed and never started: released, without spending an attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobfleet.jobs import AttemptResult, ClaimedJob
from jobfleet.supervisor.children import Child
from jobfleet.supervisor.decisions import (
    Verdict,
    bystander_verdict,
    death_verdict,
    unreported_outcome,
)
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.slots import EntryView, SlotView


@dataclass
class Settlement:
    # Attempts cut short by the death, each with its verdict (logged one by one).
    cut_short: list[tuple[ClaimedJob, Verdict, AttemptResult]] = field(default_factory=list)
    # Attempts that ran to their end, their outcomes lost with the child.
    unreported: list[AttemptResult] = field(default_factory=list)
    releases: list[tuple[int, int]] = field(default_factory=list)


def settle(
    child: Child,
    status: int,
    view: SlotView,
    entries: Sequence[EntryView],
    handlers: Mapping[str, HandlerSpec],
    *,
    wall_now: float,
    monotonic_now: float,
) -> Settlement:
    """Account for every job `child` held when it ended with wait status `status`."""
    done = Settlement()
    plan = child.kill

    def started_at(monotonic_started: float) -> float:
        return wall_now - (monotonic_now - monotonic_started)

    def record(job: ClaimedJob, verdict: Verdict, started: float) -> None:
        result = verdict.record(job, child.pid, started, handlers.get(job.type))
        done.cut_short.append((job, verdict, result))

    # The main thread's job.
    running = child.assigned.get(view.job_id) if view.job_id else None
    if plan is not None and plan.job is not None and plan.job.id in child.assigned:
        running = plan.job
    if running is not None:
        del child.assigned[running.id]
        # The slot says when the job started (on the shared monotonic clock).
        if view.job_id == running.id:
            started = started_at(view.started)
        else:
            started = plan.job_started if plan is not None else wall_now
        record(running, death_verdict(status, plan), started)
    unreported = max(0, view.jobs_done - child.reported)
    ran = unreported_outcome(status)
    for job in list(child.assigned.values())[:unreported]:
        del child.assigned[job.id]
        done.unreported.append(ran.record(job, child.pid, wall_now, handlers.get(job.type)))
    done.releases.extend((j.id, j.attempt) for j in child.assigned.values())
    child.assigned.clear()

    # The jobs beside it. The one it was killed over is recorded with the kill's cause even
    # when its outcome came (it was held back for this) and its entry is gone.
    if plan is not None and plan.job is not None and plan.job.id in child.beside:
        entry_of = {e.job_id: e for e in entries}
        doomed = child.drop_beside(plan.job.id)
        assert doomed is not None
        entry = entry_of.get(doomed.id)
        started = started_at(entry.started) if entry else plan.job_started
        record(doomed, death_verdict(status, plan), started)
    for entry in entries:
        held = child.beside.get(entry.job_id)
        if held is None or held.attempt != entry.attempt:
            continue  # its outcome was read: settled already
        child.drop_beside(held.id)
        started = started_at(entry.started)
        if entry.finished:
            done.unreported.append(ran.record(held, child.pid, started, handlers.get(held.type)))
        else:
            record(held, bystander_verdict(status, plan), started)
    done.releases.extend((j.id, j.attempt) for j in child.beside.values())
    child.beside.clear()
    child.beside_held.clear()
    return done
