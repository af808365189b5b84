"""The supervisor's decisions about its children, asked directly (no processes, no clock)."""

from __future__ import annotations

import os
import signal

from jobfleet.supervisor.children import KillPlan
from jobfleet.supervisor.decisions import (
    CRASH_BACKOFF_MAX_SECONDS,
    ChildFacts,
    Kill,
    RunningJob,
    Verdict,
    bystander_verdict,
    death_expected,
    death_verdict,
    kill_verdict,
    spawn_delay,
)

SILENT_AFTER = 2.0


def facts(
    *,
    running: bool = True,
    job_started: float = 95.0,
    timeout: float | None = None,
    heartbeat: float = 99.5,
    stall_ended: float = 0.0,
    beside: tuple[RunningJob, ...] = (),
) -> ChildFacts:
    """A child beating at 99.5 at time 100, running job 1 since 95 in its main thread."""
    main = (RunningJob(1, job_started, timeout),) if running else ()
    return ChildFacts(100.0, heartbeat, stall_ended, (*main, *beside))


def kill(f: ChildFacts, grace_deadline: float | None = None) -> Kill | None:
    return kill_verdict(
        f, silent_after=SILENT_AFTER, grace_deadline=grace_deadline, grace_seconds=30
    )


def verdict(f: ChildFacts, grace_deadline: float | None = None) -> Verdict | None:
    found = kill(f, grace_deadline)
    return found.verdict if found is not None else None


def test_a_beating_child_within_its_timeout_is_left_alone() -> None:
    assert verdict(facts(timeout=10.0)) is None
    assert verdict(facts(running=False)) is None


def test_a_silent_child_is_killed_as_crashed_saying_for_how_long() -> None:
    assert verdict(facts(heartbeat=97.0)) == Verdict(
        "crashed", "worker stopped responding: no heartbeat for 3.0 s"
    )


def test_silence_counts_from_the_end_of_the_supervisors_own_pause() -> None:
    # SIGSTOP stops the children too: their old beat is no sign of a hang.
    assert verdict(facts(heartbeat=90.0, stall_ended=99.0)) is None
    assert verdict(facts(heartbeat=90.0, stall_ended=97.5)) is not None


def test_a_job_over_its_timeout_is_timed_out() -> None:
    assert verdict(facts(timeout=4.5)) == Verdict("timed_out", "timeout after 4.5 s")
    assert verdict(facts(timeout=5.0)) is None  # exactly at the limit: not yet
    assert verdict(facts(timeout=4.5, running=False)) is None


def test_silence_is_named_before_a_timeout() -> None:
    found = verdict(facts(heartbeat=90.0, timeout=1.0))
    assert found is not None and found.outcome == "crashed"


def test_after_the_grace_period_every_child_goes_busy_or_not() -> None:
    assert verdict(facts(), grace_deadline=100.5) is None
    for running in (True, False):
        assert verdict(facts(running=running), grace_deadline=99.0) == Verdict(
            "crashed", "killed at shutdown: still running after the 30 s grace period"
        )


def _exit(code: int) -> int:
    return code << 8  # a wait status as waitpid gives it


def test_an_unplanned_death_is_a_crash_with_its_cause() -> None:
    assert death_verdict(signal.SIGKILL, None) == Verdict(
        "crashed", "worker killed by signal 9 (SIGKILL)"
    )
    assert death_verdict(_exit(3), None) == Verdict("crashed", "worker exit code 3")
    assert os.WIFEXITED(_exit(3))


def test_a_planned_kill_keeps_its_reason_and_adds_the_cause_unless_clean() -> None:
    plan = KillPlan("cancelled", "cancelled while running", None, 0.0, final=True)
    assert death_verdict(_exit(0), plan) == Verdict("cancelled", "cancelled while running", True)
    assert death_verdict(signal.SIGKILL, plan) == Verdict(
        "cancelled", "cancelled while running (killed by signal 9 (SIGKILL))", True
    )


def test_which_deaths_count_towards_the_crash_loop() -> None:
    assert death_expected(said_bye=True, killed=False, held_running_job=False)
    assert death_expected(said_bye=False, killed=True, held_running_job=True)
    assert not death_expected(said_bye=False, killed=True, held_running_job=False)
    assert not death_expected(said_bye=False, killed=False, held_running_job=True)


def test_respawning_slows_only_once_deaths_outnumber_the_pool() -> None:
    assert spawn_delay(3, desired=2) == 0.0
    assert spawn_delay(4, desired=4) == 0.0
    assert spawn_delay(5, desired=4) == 0.2
    assert spawn_delay(6, desired=4) == 0.4
    assert spawn_delay(500, desired=4) == CRASH_BACKOFF_MAX_SECONDS


def test_a_verdict_records_the_attempt_with_the_types_backoff() -> None:
    from datetime import UTC, datetime

    from jobfleet.jobs import ClaimedJob
    from jobfleet.worker.registry import HandlerSpec

    job = ClaimedJob(7, "resize", "default", 0, 2, None, "null")
    spec = HandlerSpec(
        "resize", lambda p: p, takes_context=False, backoff="fixed", backoff_seconds=3
    )
    record = Verdict("timed_out", "timeout after 5 s").record(job, 4242, 1_700_000_000.0, spec)
    assert (record.job_id, record.attempt, record.outcome, record.error) == (
        7,
        2,
        "timed_out",
        "timeout after 5 s",
    )
    assert (record.pid, record.final, record.backoff, record.backoff_seconds) == (
        4242,
        False,
        "fixed",
        3,
    )
    assert record.started_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert Verdict("crashed", "x").record(job, 1, 0.0, None).backoff is None


def test_a_job_whose_outcome_died_with_its_worker_is_a_crash_that_says_so() -> None:
    import logging

    from jobfleet.supervisor.decisions import log_level, unreported_outcome

    verdict = unreported_outcome(_exit(3))
    assert verdict.outcome == "crashed" and not verdict.final
    assert verdict.reason.startswith("worker exit code 3 after this job had finished")
    assert log_level("cancelled") == logging.INFO
    assert log_level("crashed") == log_level("timed_out") == logging.WARNING


def test_the_job_over_its_timeout_is_named_among_those_beside_it() -> None:
    beside = (RunningJob(7, 99.0, 10.0), RunningJob(8, 90.0, 4.0))
    assert kill(facts(running=False, beside=beside)) == Kill(
        Verdict("timed_out", "timeout after 4 s"), 8
    )
    assert kill(facts(running=False, beside=beside[:1])) is None


def test_an_async_job_is_left_the_grace_to_time_itself_out() -> None:
    # Its worker cancels its task at the timeout; the supervisor steps in only past the grace.
    late = RunningJob(9, 95.0, 4.0, timeout_grace=2.0)
    assert kill(facts(running=False, beside=(late,))) is None
    later = RunningJob(9, 93.0, 4.0, timeout_grace=2.0)
    assert kill(facts(running=False, beside=(later,))) == Kill(
        Verdict("timed_out", "timeout after 4 s"), 9
    )


def test_a_cancelled_job_that_has_not_ended_in_time_gets_its_worker_killed() -> None:
    assert kill(facts(running=False, beside=(RunningJob(5, 95.0, None, cancel_by=100.5),))) is None
    assert kill(facts(running=False, beside=(RunningJob(5, 95.0, None, cancel_by=99.0),))) == Kill(
        Verdict("cancelled", "cancelled while running", final=True), 5
    )


def test_jobs_beside_the_one_a_worker_is_killed_over_are_crashes_that_name_it() -> None:
    from jobfleet.jobs import ClaimedJob

    culprit = ClaimedJob(8, "fetch", "default", 0, 1, 4.0, "null")
    plan = KillPlan("timed_out", "timeout after 4 s", culprit, 0.0)
    assert bystander_verdict(signal.SIGKILL, plan) == Verdict(
        "crashed",
        "its worker was stopped over job 8 (timeout after 4 s; killed by signal 9 (SIGKILL))",
    )
    # A death of its own, or a kill over no one job, is what it is for every job.
    assert bystander_verdict(signal.SIGKILL, None) == death_verdict(signal.SIGKILL, None)
    silent = KillPlan("crashed", "worker stopped responding", None, 0.0)
    assert bystander_verdict(_exit(0), silent) == Verdict("crashed", "worker stopped responding")


def test_a_silent_child_whose_cpu_time_grows_is_working_not_hung() -> None:
    # A handler holding the GIL in C stops the heartbeat thread, not the work.
    working = ChildFacts(100.0, 90.0, 0.0, (), working=99.9)
    assert verdict(working) is None
    stopped = ChildFacts(100.0, 90.0, 0.0, (), working=97.0)
    assert verdict(stopped) == Verdict(
        "crashed", "worker stopped responding: no heartbeat for 3.0 s"
    )
