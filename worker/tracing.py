"""Each attempt in a span, when the worker process traces (OpenTelemetry with a tracer
provider set, e.g. in an `on_worker_start` hook; see the README's "Tracing").

The span (`jobfleet.job <type>`, kind CONSUMER) is a child of the enqueuer's span when the job
carries its trace context (jobfleet.tracing), else the root of a trace of its own; it is the
current span while the handler runs, so the handler's own spans nest under it. It ends with
the attempt's outcome as this process sees it: succeeded, failed, timed_out (the handler
returned after its timeout: the supervisor records it so), or cancelled (it returned after
being asked to stop). A worker killed mid-job (a crash, or a timeout or cancellation its
handler ignored) ends no span: the process is gone; the attempt is recorded as always.

Whether to trace is decided once per worker, after its start hooks: without OpenTelemetry, or
with no tracer provider set, the job loop runs as it would without this module. Nothing here
may fail a job: a tracing error is logged and the job runs on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jobfleet.jobs import AttemptResult, Success
from jobfleet.tracing import parse_carrier
from jobfleet.worker.registry import HandlerSpec

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("jobfleet.worker")

SPAN_NAME = "jobfleet.job {type}"
# A span's status description: the exception's first line, not a whole traceback.
STATUS_DESCRIPTION_CHARS = 200


def attempt_tracer(node: str, handlers: Mapping[str, HandlerSpec]) -> AttemptTracer | None:
    """The tracer for this worker's attempts, or None: no OpenTelemetry, or no tracer provider
    set (its spans would all be no-ops, and the job loop is spared even those)."""
    if "opentelemetry.trace" not in sys.modules and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ:
        # Nothing in this process imported OpenTelemetry's API (setting a provider does, in
        # the handlers' module or a start hook), nor names a provider for it to load: no
        # provider. Importing the API to find that out cost each worker 20-40 ms of CPU at
        # its start, before its first job, while the supervisor makes its connections.
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    from jobfleet import __version__

    return AttemptTracer(provider.get_tracer("jobfleet", __version__), node, handlers)


class AttemptTracer:
    def __init__(self, tracer: Tracer, node: str, handlers: Mapping[str, HandlerSpec]) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = tracer
        self.node = node
        self.handlers = handlers
        self._context = context
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()

    def start(
        self,
        job_id: int,
        attempt: int,
        type_: str,
        timeout: float | None,
        trace_context: str | Mapping[str, Any] | None,
    ) -> AttemptSpan | None:
        """Open the attempt's span and make it current; None if that failed (the job runs
        untraced)."""
        try:
            carrier = parse_carrier(trace_context)
            # An empty context, not the current one: a trace a previous handler left attached
            # must not adopt this job.
            parent = self._propagator.extract(carrier or {}, context=self._context.Context())
            span = self.tracer.start_span(
                SPAN_NAME.format(type=type_),
                context=parent,
                kind=self._trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "jobfleet",
                    "messaging.operation.type": "process",
                    "messaging.message.id": str(job_id),
                    "jobfleet.job.id": job_id,
                    "jobfleet.job.type": type_,
                    "jobfleet.job.attempt": attempt,
                    "jobfleet.node": self.node,
                },
            )
            token = self._context.attach(self._trace.set_span_in_context(span))
        except Exception:
            log.warning("could not start a job's span; it runs untraced", exc_info=True)
            return None
        spec = self.handlers.get(type_)
        limit = timeout or (spec.timeout if spec else None)  # as the supervisor decides it
        return AttemptSpan(self, span, token, limit)


class AttemptSpan:
    """One attempt's open span: `raised` is handed to execute() to see the handler's
    exception, `end` closes the span with the outcome."""

    def __init__(self, tracer: AttemptTracer, span: Span, token: Any, timeout: float | None):
        self.tracer = tracer
        self.span = span
        self.token = token
        self.timeout = timeout
        self.started = time.monotonic()
        self.exception: BaseException | None = None

    def raised(self, exc: BaseException) -> None:
        self.exception = exc

    def end(self, result: Success | AttemptResult, cancelled: bool) -> None:
        try:
            self._end(result, cancelled)
        except Exception:
            log.warning("could not end a job's span", exc_info=True)

    def _end(self, result: Success | AttemptResult, cancelled: bool) -> None:
        from opentelemetry.trace import Status, StatusCode

        span, elapsed = self.span, time.monotonic() - self.started
        error: str | None = None
        if cancelled:  # asked to stop: the supervisor records it cancelled, whatever it returned
            outcome = "cancelled"
        elif self.timeout and elapsed >= self.timeout:
            outcome, error = "timed_out", f"timeout after {self.timeout:g} s"
        elif isinstance(result, AttemptResult):
            outcome, error = result.outcome, _last_line(result.error)
        else:
            outcome = "succeeded"
        span.set_attribute("jobfleet.job.outcome", outcome)
        if self.exception is not None:
            span.record_exception(self.exception)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error[:STATUS_DESCRIPTION_CHARS]))
        try:
            span.end()
        finally:
            self.tracer._context.detach(self.token)


def _last_line(text: str | None) -> str:
    """What an error says in a line: a traceback's last line names the exception and its
    message; the other reasons are one line."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "failed"
