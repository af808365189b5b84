"""The attempt span alone, in this process: its parent, attributes and the outcome it ends
with (succeeded, failed, timed_out, cancelled), and that no tracer is made when the worker
has no tracer provider or no OpenTelemetry. The fleet test (tests/test_tracing_fleet.py)
runs the same in real workers."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from jobfleet.worker import tracing
from jobfleet.worker.execute import execute
from jobfleet.worker.registry import HandlerSpec
from jobfleet.worker.tracing import AttemptTracer

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def spec(fn: Any, timeout: float | None = None) -> HandlerSpec:
    return HandlerSpec(type="t", fn=fn, timeout=timeout, takes_context=False)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


def run(
    exporter: InMemorySpanExporter,
    fn: Any,
    *,
    timeout: float | None = None,
    carrier: Any = None,
    cancelled: bool = False,
) -> ReadableSpan:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handlers = {"t": spec(fn, timeout)}
    tracer = AttemptTracer(provider.get_tracer("jobfleet"), "node-a", handlers)
    span = tracer.start(42, 3, "t", None, carrier)
    assert span is not None
    outcome = execute(42, 3, "t", "null", handlers, max_result_bytes=1000, raised=span.raised)
    span.end(outcome, cancelled)
    assert not get_current_span().get_span_context().is_valid  # detached again
    (finished,) = exporter.get_finished_spans()
    exporter.clear()
    return finished


def test_a_traced_job_continues_its_enqueuer_trace(exporter: InMemorySpanExporter) -> None:
    seen: list[int] = []
    span = run(
        exporter,
        lambda _: seen.append(get_current_span().get_span_context().span_id),
        carrier=json.dumps({"traceparent": PARENT}),
    )
    assert span.name == "jobfleet.job t"
    assert span.kind is SpanKind.CONSUMER
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent.span_id == 0xB7AD6B7169203331
    assert seen == [span.context.span_id]  # current while the handler runs
    assert dict(span.attributes or {}) == {
        "messaging.system": "jobfleet",
        "messaging.operation.type": "process",
        "messaging.message.id": "42",
        "jobfleet.job.id": 42,
        "jobfleet.job.type": "t",
        "jobfleet.job.attempt": 3,
        "jobfleet.node": "node-a",
        "jobfleet.job.outcome": "succeeded",
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_failure_is_an_error_with_its_exception(exporter: InMemorySpanExporter) -> None:
    def broken(_: Any) -> None:
        raise ValueError("no such order")

    span = run(exporter, broken)
    assert span.attributes is not None and span.attributes["jobfleet.job.outcome"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no such order"
    (event,) = span.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"


def test_an_unstorable_result_is_an_error_too(exporter: InMemorySpanExporter) -> None:
    span = run(exporter, lambda _: object())
    assert span.status.status_code is StatusCode.ERROR
    assert "cannot be stored" in (span.status.description or "")


def test_timed_out_and_cancelled_as_the_supervisor_records_them(
    exporter: InMemorySpanExporter,
) -> None:
    span = run(exporter, lambda _: time.sleep(0.05), timeout=0.01)
    assert span.attributes is not None and span.attributes["jobfleet.job.outcome"] == "timed_out"
    assert span.status.status_code is StatusCode.ERROR
    span = run(exporter, lambda _: None, cancelled=True)
    assert span.attributes is not None and span.attributes["jobfleet.job.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    "carrier", [None, "{not json", '{"traceparent": 5}', {"traceparent": "00-zz"}, "[]"]
)
def test_no_or_a_bad_stored_context_makes_a_root_span(
    exporter: InMemorySpanExporter, carrier: Any
) -> None:
    span = run(exporter, lambda _: "ok", carrier=carrier)
    assert span.parent is None
    assert span.attributes is not None and span.attributes["jobfleet.job.outcome"] == "succeeded"


def test_no_tracer_without_a_provider_or_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This process never sets a global tracer provider: the API's proxy stands in.
    assert tracing.attempt_tracer("a", {}) is None
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    assert tracing.attempt_tracer("a", {}) is None
