"""The supervisor's decisions about its children, as pure functions: no processes, no clock,
no database. The pool (pool.py) gathers the facts, asks here, and carries out the answer;
tests/unit/ asks directly."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from jobfleet.jobs import AttemptResult, ClaimedJob, Outcome
from jobfleet.supervisor.children import KillPlan, describe_exit
from jobfleet.worker.registry import HandlerSpec


@dataclass(frozen=True)
class Verdict:
    """How an attempt is to be recorded."""

    outcome: Outcome
    reason: str
    final: bool = False

    def record(
        self, job: ClaimedJob, pid: int, started: float, spec: HandlerSpec | None
    ) -> AttemptResult:
        """The attempt's record; the type's backoff goes with it, for a job enqueued before
        any node published the type's defaults. `started`: Unix time."""
        return AttemptResult(
            job.id,
            job.attempt,
            self.outcome,
            error=self.reason,
            final=self.final,
            pid=pid,
            backoff=spec.backoff if spec else None,
            backoff_seconds=spec.backoff_seconds if spec else None,
            started_at=datetime.fromtimestamp(started, UTC),
        )


@dataclass(frozen=True)
class RunningJob:
    """A job a live child runs now, as its slot says (monotonic seconds)."""

    job_id: int
    started: float
    timeout: float | None  # its timeout, if it has one
    # Seconds past the timeout before the child is killed over it: the worker times out an
    # async job itself (its task is cancelled), and is killed only if that does not end it.
    # 0 for the main thread's job and a thread's: neither can be stopped but by the kill.
    timeout_grace: float = 0.0
    cancel_by: float | None = None  # cancelled: it must have ended by then


@dataclass(frozen=True)
class ChildFacts:
    """What the supervisor knows of a live child at one instant (monotonic seconds)."""

    now: float
    heartbeat: float  # the child's last beat
    stall_ended: float  # when the supervisor itself last came back from a pause
    running: tuple[RunningJob, ...] = ()
    # When its CPU time was last seen to grow: working, if not beating (a handler holding the
    # GIL in C code stops the heartbeat thread, not the work).
    working: float = 0.0


@dataclass(frozen=True)
class Kill:
    """Kill the child: `job` (None: no one job) is recorded with the verdict; every other job
    it runs, as a bystander (bystander_verdict)."""

    verdict: Verdict
    job: int | None = None


def kill_verdict(
    facts: ChildFacts, *, silent_after: float, grace_deadline: float | None, grace_seconds: float
) -> Kill | None:
    """Should this child be killed now, and why? None: leave it be.

    Silence is measured from the latest of its last beat, the last time its CPU time was
    seen to grow, and the end of a pause of the supervisor (SIGSTOP, a stalled host stop the
    children too): a hung child neither beats nor works. A job over its timeout is
    timed out, and one cancelled that has not ended by its time is cancelled; after the
    drain's grace period every child goes, busy or not."""
    silent = facts.now - max(facts.heartbeat, facts.stall_ended, facts.working)
    if silent > silent_after:
        return Kill(
            Verdict("crashed", f"worker stopped responding: no heartbeat for {silent:.1f} s")
        )
    for job in facts.running:
        if job.timeout and facts.now - job.started > job.timeout + job.timeout_grace:
            return Kill(Verdict("timed_out", f"timeout after {job.timeout:g} s"), job.job_id)
    for job in facts.running:
        if job.cancel_by is not None and facts.now > job.cancel_by:
            return Kill(Verdict("cancelled", "cancelled while running", final=True), job.job_id)
    if grace_deadline is not None and facts.now > grace_deadline:
        return Kill(
            Verdict(
                "crashed",
                f"killed at shutdown: still running after the {grace_seconds:g} s grace period",
            )
        )
    return None


def bystander_verdict(status: int, plan: KillPlan | None) -> Verdict:
    """What a child's death means for a job it ran beside the one it died over (or beside
    others, when it died on its own): a crash, saying what brought the worker down."""
    if plan is None or plan.job is None:
        return death_verdict(status, plan)
    return Verdict(
        "crashed",
        f"its worker was stopped over job {plan.job.id} ({plan.reason}; {describe_exit(status)})",
    )


def death_verdict(status: int, plan: KillPlan | None) -> Verdict:
    """What a child's death means for the job it was running: the cause the supervisor
    gave when it killed it, or a crash with the way it ended."""
    cause = describe_exit(status)
    if plan is None:
        return Verdict("crashed", f"worker {cause}")
    # A worker that left cleanly when asked needs no "(exit code 0)" on the record.
    clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return Verdict(plan.outcome, plan.reason if clean else f"{plan.reason} ({cause})", plan.final)


def unreported_outcome(status: int) -> Verdict:
    """What a job means that the child finished but whose outcome died with it (its slot
    counted it done; its report never came): it ran, so its attempt is spent and recorded, and
    retried like a crash."""
    return Verdict(
        "crashed",
        f"worker {describe_exit(status)} after this job had finished, before its outcome "
        "reached the supervisor (the job may have done its work)",
    )


def log_level(outcome: str) -> int:
    """A cancel is someone's request, logged as news; a death or a kill is a warning."""
    return logging.INFO if outcome == "cancelled" else logging.WARNING


def death_expected(*, said_bye: bool, killed: bool, held_running_job: bool) -> bool:
    """A death the supervisor asked for or the child announced (drained, recycled), or a kill
    over a job, is no crash; anything else counts towards the crash-loop backoff."""
    return said_bye or (killed and held_running_job)


def spawn_delay(deaths_in_window: int, desired: int) -> float:
    """Seconds to wait before the next spawn: none, until unexpected deaths in the crash
    window outnumber max(3, desired); then 0.2 s doubling per extra death, at most 10 s."""
    excess = deaths_in_window - max(3, desired)
    return min(CRASH_BACKOFF_MAX_SECONDS, 0.1 * 2**excess) if excess > 0 else 0.0


CRASH_BACKOFF_MAX_SECONDS = 10.0
