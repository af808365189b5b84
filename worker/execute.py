"""Running one claimed job in this process and turning what happened into an outcome."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping

from jobfleet.jobs import AttemptResult, ClaimedJob, utcnow
from jobfleet.options import encode_json
from jobfleet.worker.context import JobContext, ProgressSink
from jobfleet.worker.registry import HandlerSpec


def execute(
    job: ClaimedJob,
    handlers: Mapping[str, HandlerSpec],
    *,
    max_result_bytes: int,
    progress_sink: ProgressSink | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> AttemptResult:
    """Call the job's handler; any exception becomes a failed attempt with its traceback."""
    started = utcnow()
    spec = handlers.get(job.type)
    if spec is None:  # claims ask only for known types; this guards a registry that changed
        return AttemptResult(
            job.id,
            job.attempt,
            "failed",
            error=f"no handler for job type {job.type!r}",
            final=True,
            pid=os.getpid(),
            started_at=started,
        )
    ctx = JobContext(job.id, job.attempt, progress_sink=progress_sink, cancelled=cancelled)
    try:
        value = spec.fn(job.payload, ctx) if spec.takes_context else spec.fn(job.payload)
    except Exception:
        return AttemptResult(
            job.id,
            job.attempt,
            "failed",
            error=traceback.format_exc().rstrip(),
            backoff=spec.backoff,
            backoff_seconds=spec.backoff_seconds,
            pid=os.getpid(),
            started_at=started,
        )
    try:
        body = encode_json("result", value, max_result_bytes)
    except ValueError as exc:
        return AttemptResult(
            job.id,
            job.attempt,
            "failed",
            error=f"the handler's return value cannot be stored: {exc}",
            backoff=spec.backoff,
            backoff_seconds=spec.backoff_seconds,
            pid=os.getpid(),
            started_at=started,
        )
    return AttemptResult(
        job.id, job.attempt, "succeeded", result_json=body, pid=os.getpid(), started_at=started
    )
