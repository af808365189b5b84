"""Running one job in this process and turning what happened into an outcome."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from jobfleet.jobs import AttemptResult, Success
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
) -> Success | AttemptResult:
    """Decode the payload and call the job's handler. A success comes back as a Success tuple
    (the hot path: no objects, no datetimes); anything else as a failed AttemptResult with the
    traceback or the reason (cleaned of what PostgreSQL cannot store, cut to
    `max_error_bytes`): an exception, a payload or a result that cannot be read or stored.
    Nothing a handler does or returns escapes from here. `pid` is the worker's, for the
    record; `raised` is shown what the handler (or reading its payload or result) raised,
    for the attempt's span."""
    started = time.time_ns() // 1000  # microseconds: see Success
    spec = handlers.get(type)
    if spec is None:  # claims ask only for known types; this guards a registry that changed
        return _failure(
            job_id,
            attempt,
            started,
            None,
            f"no handler for job type {type!r}",
            max_error_bytes,
            final=True,
        )
    try:
        payload = None if payload_json == "null" else json.loads(payload_json)
    except Exception as exc:  # nested past the decoder's depth, a number past int's digits
        if raised is not None:
            raised(exc)
        reason = f"the payload cannot be read: {_describe(exc)}"
        return _failure(job_id, attempt, started, spec, reason, max_error_bytes, final=True)
    try:
        if spec.takes_context:
            ctx = JobContext(job_id, attempt, progress_sink=progress_sink, cancelled=cancelled)
            value = spec.fn(payload, ctx)
        else:
            value = spec.fn(payload)
    except Exception as exc:
        if raised is not None:
            raised(exc)
        return _failure(job_id, attempt, started, spec, _traceback(exc), max_error_bytes)
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
    return AttemptResult(
        job_id,
        attempt,
        "failed",
        error=clean_text(error, max_error_bytes),
        final=final,
        backoff=spec.backoff if spec else None,
        backoff_seconds=spec.backoff_seconds if spec else None,
        started_at=datetime.fromtimestamp(started / 1e6, UTC),
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
