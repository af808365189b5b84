"""Trace context on jobs (OpenTelemetry, optional: `pip install 'jobfleet[otel]'`).

When the enqueuing process has OpenTelemetry and a span is active, the enqueue stores that
span's W3C trace context on the job (`jobs.trace_context`); the worker's attempt span
(jobfleet.worker.tracing) continues the trace from it, so a web request's trace runs on into
its jobs. Without OpenTelemetry, or with no span active, nothing is stored. The HTTP API
also stores a web client's own `traceparent` and `tracestate` headers when it has no span
active (job_trace_context): checked here like the rest, no OpenTelemetry needed.

The stored form is W3C Trace Context whatever propagators the application configured: it is
jobfleet's own record, written and read only by jobfleet, not a header between services.

Everything that reaches SQL is checked here: a traceparent of the wrong shape is dropped (the
job is enqueued untraced), a tracestate that is too long or not printable ASCII is dropped
alone. So what is stored is small (at most about 600 bytes), and a bad carrier never fails an
enqueue or a claim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

# version-traceid-parentid-flags, lower-case hex; version ff and all-zero ids are invalid
# (W3C Trace Context, section 3.2). Version 00 has exactly these four fields.
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
# W3C asks propagators to keep at least 512 characters of tracestate and lets them drop the
# rest; printable ASCII only, so no tab, newline or NUL ever reaches COPY or jsonb.
TRACESTATE_MAX_CHARS = 512
_TRACESTATE = re.compile(rf"[\x20-\x7e]{{1,{TRACESTATE_MAX_CHARS}}}")


def checked_carrier(carrier: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The W3C fields of `carrier` that may be stored, or None when its traceparent is missing
    or malformed (then nothing of it is kept)."""
    if not carrier:
        return None
    traceparent = carrier.get("traceparent")
    if not isinstance(traceparent, str) or not _TRACEPARENT.fullmatch(traceparent):
        return None
    checked = {"traceparent": traceparent}
    tracestate = carrier.get("tracestate")
    if isinstance(tracestate, str) and _TRACESTATE.fullmatch(tracestate):
        checked["tracestate"] = tracestate
    return checked


def carrier_json(carrier: Mapping[str, Any] | None) -> str | None:
    """The checked carrier as the JSON text the enqueue statements store, or None."""
    checked = checked_carrier(carrier)
    return None if checked is None else json.dumps(checked, separators=(",", ":"))


def parse_carrier(stored: str | Mapping[str, Any] | None) -> dict[str, str] | None:
    """A job's stored trace context (JSON text from a raw claim, or a dict), checked again:
    a row written by hand must not break a worker. None when absent or unusable."""
    if stored is None:
        return None
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return None
    return checked_carrier(stored) if isinstance(stored, Mapping) else None


@cache
def _capture() -> Callable[[], dict[str, str] | None] | None:
    """How to read the current trace context, or None without OpenTelemetry: the import is
    tried once per process, so an enqueue without it costs one cached call."""
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    propagator = TraceContextTextMapPropagator()

    def capture() -> dict[str, str] | None:
        if not trace.get_current_span().get_span_context().is_valid:
            return None  # no span active: the job starts a trace of its own, if any
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        return carrier

    return capture


def current_trace_context() -> str | None:
    """The caller's active trace context as the JSON text stored on a job, or None."""
    capture = _capture()
    return None if capture is None else carrier_json(capture())


def job_trace_context(remote: Mapping[str, Any] | None = None) -> str | None:
    """What an enqueue stores: this process's active trace context, else `remote`, a remote
    caller's (the `traceparent` and `tracestate` headers of a POST /jobs), checked alike. An
    active span comes first: in an API process that traces its requests it is the request's
    own span, itself a child of the caller's, so the trace keeps the API's hop. Without one,
    the headers are stored as they came (checked); OpenTelemetry is not needed for that."""
    return current_trace_context() or carrier_json(remote)
