"""Running one job in this process and turning what happened into an outcome."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from jobfleet.jobs import AttemptResult, Outcome, Success
from jobfleet.options import OptionError, encode_json
from jobfleet.text import clean_text
from jobfleet.worker.context import JobContext, ProgressSink
from jobfleet.worker.registry import HandlerSpec


def execute(
    job_id: int,
    attempt: int,
    type: str,
    payload_json: str,
    handlers: Mapping[str, HandlerSpec],
    *,
    max_result_bytes: int,
    max_error_bytes: int = 64 * 1024,
    progress_sink: ProgressSink | None = None,
    cancelled: Callable[[], bool] | None = None,
    pid: int | None = None,
    raised: Callable[[BaseException], None] | None = None,
    tx: Any = None,
) -> Success | AttemptResult:
    """Decode the payload and call the job's handler. A success comes back as a Success tuple
    (the hot path: no objects, no datetimes); anything else as a failed AttemptResult with the
    traceback or the reason (cleaned of what PostgreSQL cannot store, cut to
    `max_error_bytes`): an exception, a payload or a result that cannot be read or stored.
    Nothing a handler does or returns escapes from here. `pid` is the worker's, for the
    record; `raised` is shown what the handler (or reading its payload or result) raised,
    for the attempt's span."""
    started = time.time_ns() // 1000  # microseconds: see Success
    call = _prepare(job_id, attempt, type, payload_json, handlers, started, max_error_bytes, raised)
    if isinstance(call, AttemptResult):
        return call
    spec, payload = call
    try:
        if spec.takes_context:
            ctx = JobContext(
                job_id, attempt, progress_sink=progress_sink, cancelled=cancelled, tx=tx
            )
            value = spec.fn(payload, ctx)
        else:
            value = spec.fn(payload)
    except Exception as exc:
        if raised is not None:
            raised(exc)
        return _failure(job_id, attempt, started, spec, _traceback(exc), max_error_bytes)
    return _conclude(
        job_id, attempt, started, spec, value, pid, max_result_bytes, max_error_bytes, raised
    )


async def execute_async(
    job_id: int,
    attempt: int,
    type: str,
    payload_json: str,
    handlers: Mapping[str, HandlerSpec],
    *,
    timeout: float | None,
    max_result_bytes: int,
    max_error_bytes: int = 64 * 1024,
    progress_sink: ProgressSink | None = None,
    cancelled: Callable[[], bool] | None = None,
    pid: int | None = None,
    raised: Callable[[BaseException], None] | None = None,
) -> Success | AttemptResult:
    """`execute` for an `async def` handler, awaited on the worker's event loop: past
    `timeout` seconds its task is cancelled and the attempt is `timed_out`; cancelled because
    someone cancelled the job (`cancelled()` is true), the attempt is `cancelled`."""
    started = time.time_ns() // 1000
    call = _prepare(job_id, attempt, type, payload_json, handlers, started, max_error_bytes, raised)
    if isinstance(call, AttemptResult):
        return call
    spec, payload = call
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            if spec.takes_context:
                ctx = JobContext(job_id, attempt, progress_sink=progress_sink, cancelled=cancelled)
                value = await spec.fn(payload, ctx)
            else:
                value = await spec.fn(payload)
    except TimeoutError as exc:
        if not deadline.expired():  # the handler's own timeout, not the job's: a failure
            if raised is not None:
                raised(exc)
            return _failure(job_id, attempt, started, spec, _traceback(exc), max_error_bytes)
        return _ended(job_id, attempt, started, spec, "timed_out", f"timeout after {timeout:g} s")
    except asyncio.CancelledError:
        if cancelled is None or not cancelled():
            raise  # the worker itself is going: not this job's outcome
        return cancelled_outcome(job_id, attempt, started, spec)
    except Exception as exc:
        if raised is not None:
            raised(exc)
        return _failure(job_id, attempt, started, spec, _traceback(exc), max_error_bytes)
    return _conclude(
        job_id, attempt, started, spec, value, pid, max_result_bytes, max_error_bytes, raised
    )


CANCELLED_REASON = "cancelled while running"


def cancelled_outcome(
    job_id: int, attempt: int, started: int, spec: HandlerSpec | None
) -> AttemptResult:
    """A job someone cancelled while it ran: final, whatever the handler did after."""
    return _ended(job_id, attempt, started, spec, "cancelled", CANCELLED_REASON, final=True)


def _prepare(
    job_id: int,
    attempt: int,
    type: str,
    payload_json: str,
    handlers: Mapping[str, HandlerSpec],
    started: int,
    max_error_bytes: int,
    raised: Callable[[BaseException], None] | None,
) -> tuple[HandlerSpec, Any] | AttemptResult:
    """The job's handler and its decoded payload, or the failure that stops it before."""
    spec = handlers.get(type)
    if spec is None:  # claims ask only for known types; this guards a registry that changed
        reason = f"no handler for job type {type!r}"
        return _failure(job_id, attempt, started, None, reason, max_error_bytes, final=True)
    try:
        payload = None if payload_json == "null" else json.loads(payload_json)
    except Exception as exc:  # nested past the decoder's depth, a number past int's digits
        if raised is not None:
            raised(exc)
        reason = f"the payload cannot be read: {_describe(exc)}"
        return _failure(job_id, attempt, started, spec, reason, max_error_bytes, final=True)
    return spec, payload


def _conclude(
    job_id: int,
    attempt: int,
    started: int,
    spec: HandlerSpec,
    value: Any,
    pid: int | None,
    max_result_bytes: int,
    max_error_bytes: int,
    raised: Callable[[BaseException], None] | None,
) -> Success | AttemptResult:
    """The handler returned `value`: a success carrying it, if it can be stored."""
    if value is not None and inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: no "was never awaited" warning on top
        reason = (
            "the handler returned an awaitable instead of a value: declare it `async def` "
            "so that jobfleet awaits it on the worker's event loop"
        )
        return _failure(job_id, attempt, started, spec, reason, max_error_bytes, final=True)
    try:
        body = "null" if value is None else encode_json("result", value, max_result_bytes)
    except Exception as exc:  # not JSON, too big or deep, or an object whose encoding raises
        if raised is not None:
            raised(exc)
        # Final: the handler has run, and running it again (a card charged twice) is what a
        # user fears most from a value that could never be stored anyway.
        reason = f"the handler's return value cannot be stored: {_describe(exc)}"
        return _failure(job_id, attempt, started, spec, reason, max_error_bytes, final=True)
    return (job_id, attempt, body, pid, started, time.time_ns() // 1000)


def _ended(
    job_id: int,
    attempt: int,
    started: int,
    spec: HandlerSpec | None,
    outcome: Outcome,
    reason: str,
    *,
    final: bool = False,
) -> AttemptResult:
    return AttemptResult(
        job_id,
        attempt,
        outcome,
        error=reason,
        final=final,
        backoff=spec.backoff if spec else None,
        backoff_seconds=spec.backoff_seconds if spec else None,
        started_at=datetime.fromtimestamp(started / 1e6, UTC),
    )


def _failure(
    job_id: int,
    attempt: int,
    started: int,
    spec: HandlerSpec | None,
    error: str,
    max_error_bytes: int,
    *,
    final: bool = False,
) -> AttemptResult:
    return _ended(
        job_id, attempt, started, spec, "failed", clean_text(error, max_error_bytes), final=final
    )


def _traceback(raised: BaseException) -> str:
    """The traceback, or what can be said of the exception when formatting it fails too (a
    code object's filename with a NUL in it, a __notes__ that raises)."""
    try:
        return "".join(traceback.format_exception(raised)).rstrip()
    except Exception as why:
        return f"{_describe(raised)}\n(its traceback could not be formatted: {type(why).__name__})"


def _describe(exc: BaseException) -> str:
    """`Type: message`, even for an exception whose str() raises."""
    try:
        text = str(exc)
    except Exception:
        text = "<its message could not be read>"
    name = type(exc).__qualname__
    return f"{name}: {text}" if not isinstance(exc, OptionError) else text
