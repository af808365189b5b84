"""The drill's job types: a real fleet's mix in small. Named `drill_*` so that only the drill's
own nodes, which load this module, ever claim them, whatever else shares the database."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from jobfleet.drill.queries import CHARGE
from jobfleet.worker.context import JobContext
from jobfleet.worker.registry import handler


class DrillFailure(Exception):
    pass


def _get(payload: Any, key: str, default: float) -> float:
    return float(payload.get(key, default)) if isinstance(payload, dict) else default


@handler("drill_fast")
def fast(payload: Any) -> None:
    return None


@handler("drill_slow")
def slow(payload: Any) -> None:
    time.sleep(_get(payload, "seconds", 0.2))


@handler("drill_cpu")
def cpu(payload: Any) -> int:
    deadline = time.thread_time() + _get(payload, "ms", 20) / 1000
    spins = 0
    while time.thread_time() < deadline:
        spins += 1
    return spins


@handler("drill_flaky")
def flaky(payload: Any, ctx: JobContext) -> int:
    if ctx.attempt <= _get(payload, "fail_times", 1):
        raise DrillFailure(f"planned failure on attempt {ctx.attempt}")
    return ctx.attempt


@handler("drill_fail")
def fail(payload: Any) -> None:
    raise DrillFailure("this job always fails: it must end dead")


@handler("drill_crash_once")
def crash_once(payload: Any, ctx: JobContext) -> int:
    """Kill the worker running it on the first attempt (as a segfaulting library would), then
    succeed: the supervisor must record the crash and the job must still finish."""
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.attempt


def _charge(payload: Any, ctx: JobContext) -> int:
    """Write this attempt's row, hold the transaction a while, then maybe decline: only a
    success commits the row (with the job's completion), so a job ends with one row or none."""
    ctx.tx.execute(CHARGE, {"job_id": ctx.job_id, "attempt": ctx.attempt})
    time.sleep(_get(payload, "seconds", 0.0))
    if ctx.attempt <= _get(payload, "decline_times", 0):
        raise DrillFailure(f"card declined on attempt {ctx.attempt}, after writing its row")
    return ctx.attempt


@handler("drill_charge", transactional=True)
def charge(payload: Any, ctx: JobContext) -> int:
    return _charge(payload, ctx)


@handler("drill_charge_declined", transactional=True)
def charge_declined(payload: Any, ctx: JobContext) -> int:
    return _charge(payload, ctx)
