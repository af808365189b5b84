"""Example handlers (the contract's table): the default for `--handlers`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from jobfleet.worker.context import JobContext
from jobfleet.worker.registry import handler


def _dict(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {}


@handler("noop")
def noop(payload: Any) -> None:
    return None


@handler("echo")
def echo(payload: Any) -> Any:
    return payload


# How often a sleeping example looks whether it was cancelled.
CANCEL_CHECK_SECONDS = 0.05


@handler("sleep")
def sleep(payload: Any, ctx: JobContext) -> None:
    """Sleep, as a well-behaved long handler does: watching for cancellation, so a cancelled
    job ends at once instead of after the kill grace."""
    deadline = time.monotonic() + float(_dict(payload).get("seconds", 0.5))
    while (left := deadline - time.monotonic()) > 0 and not ctx.cancelled():
        time.sleep(min(left, CANCEL_CHECK_SECONDS))


@handler("async_sleep", concurrency=50)
async def async_sleep(payload: Any) -> None:
    """`sleep` for I/O-bound work: up to 50 at once in each worker, on its event loop. A
    cancel or a timeout cancels its task at once."""
    await asyncio.sleep(float(_dict(payload).get("seconds", 0.5)))


@handler("cpu")
def cpu(payload: Any) -> int:
    """Burn `ms` milliseconds of CPU in pure Python (holds the GIL, like real CPU work)."""
    deadline = time.thread_time() + float(_dict(payload).get("ms", 20)) / 1000
    spins = 0
    while time.thread_time() < deadline:
        for _ in range(1000):
            spins += 1
    return spins


class ExampleFailure(Exception):
    pass


@handler("fail")
def fail(payload: Any) -> None:
    raise ExampleFailure(str(_dict(payload).get("message", "this job always fails")))


@handler("flaky")
def flaky(payload: Any, ctx: JobContext) -> dict[str, int]:
    fail_times = int(_dict(payload).get("fail_times", 2))
    if ctx.attempt <= fail_times:
        raise ExampleFailure(f"flaky failure on attempt {ctx.attempt} of {fail_times} planned")
    return {"succeeded_on_attempt": ctx.attempt}


@handler("crash")
def crash(payload: Any) -> None:
    """Kill the process running it: by a signal, or by exiting with a code."""
    body = _dict(payload)
    if "exit_code" in body:
        os._exit(int(body["exit_code"]))
    os.kill(os.getpid(), int(body.get("signal", signal.SIGKILL)))


@handler("progress")
def progress(payload: Any, ctx: JobContext) -> dict[str, int]:
    body = _dict(payload)
    steps, seconds = int(body.get("steps", 10)), float(body.get("seconds", 0.2))
    for step in range(1, steps + 1):
        if ctx.cancelled():
            return {"steps_done": step - 1}
        time.sleep(seconds)
        ctx.progress(step / steps, f"step {step} of {steps}")
    return {"steps_done": steps}
