"""Tracing, enqueue side: every enqueue path stores the caller's active trace context on the
job (checked: a malformed traceparent stores nothing, an oversized tracestate is dropped),
and nothing when no span is active or OpenTelemetry is not installed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import jobfleet
from jobfleet import tracing
from tests.conftest import scalar


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    """A tracer of its own (the global provider is left alone: it can be set only once)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("tests")
    provider.shutdown()


def traceparent(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def stored(conn: psycopg.Connection[Any], job_id: int) -> Any:
    return scalar(conn, "SELECT trace_context FROM jobs WHERE id = %s", (job_id,))


def test_every_enqueue_path_records_the_active_trace(
    conn: psycopg.Connection[Any], db_url: str, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("POST /orders") as span:
        one = jobfleet.enqueue(conn, "echo", {"n": 1})
        many = jobfleet.enqueue_many(conn, "echo", [{"n": 2}, {"n": 3}])

        async def from_asyncio() -> list[int]:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
                return [
                    await jobfleet.aio.enqueue(aconn, "echo", {"n": 4}),
                    *await jobfleet.aio.enqueue_many(aconn, "echo", [{"n": 5}]),
                ]

        awaited = asyncio.run(from_asyncio())
    untraced = jobfleet.enqueue(conn, "echo")
    for job_id in [one, *many, *awaited]:
        assert stored(conn, job_id) == {"traceparent": traceparent(span)}, job_id
    assert stored(conn, untraced) is None


def test_the_tracestate_travels_through_insert_and_copy_alike(
    conn: psycopg.Connection[Any],
) -> None:
    # A quote and a backslash are valid in a tracestate value; JSON escapes them, and COPY's
    # text format must then keep the backslashes.
    state = TraceState([("vendor", 'a"b\\c'), ("other", "x=y")])
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=state,
    )
    with trace.use_span(NonRecordingSpan(remote)):
        one = jobfleet.enqueue(conn, "echo")
        many = jobfleet.enqueue_many(conn, "echo", [None, None])
    expected = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": state.to_header(),
    }
    assert 'a"b\\c' in expected["tracestate"]
    for job_id in [one, *many]:
        assert stored(conn, job_id) == expected


def test_an_oversized_tracestate_is_dropped_and_the_trace_kept(
    conn: psycopg.Connection[Any],
) -> None:
    state = TraceState([(f"k{n}", "v" * 200) for n in range(32)])  # valid, but 6.6 kB
    remote = SpanContext(1, 2, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    with trace.use_span(NonRecordingSpan(remote)):
        job_id = jobfleet.enqueue(conn, "echo")
    assert stored(conn, job_id) == {"traceparent": f"00-{1:032x}-{2:016x}-01"}


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "x" * 100_000},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"},
        {"traceparent": 12, "tracestate": "a=b"},
        {"tracestate": "a=b"},
        {},
    ],
)
def test_a_bad_carrier_is_dropped_and_the_job_enqueued_untraced(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, carrier: dict[str, Any]
) -> None:
    monkeypatch.setattr(tracing, "_capture", lambda: lambda: carrier)
    job_id = jobfleet.enqueue(conn, "echo")
    assert jobfleet.enqueue_many(conn, "echo", [1])
    assert stored(conn, job_id) is None
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE trace_context IS NOT NULL") == 0


def test_a_bad_tracestate_alone_is_dropped() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for state in ["a=b\tc", "a=\x00", "é=1", "", "v" * 513, None, 7]:
        assert tracing.checked_carrier({"traceparent": good, "tracestate": state}) == {
            "traceparent": good
        }
    assert tracing.checked_carrier({"traceparent": good, "tracestate": "a=" + "v" * 510}) == {
        "traceparent": good,
        "tracestate": "a=" + "v" * 510,
    }
    assert tracing.parse_carrier("{not json") is None
    assert tracing.parse_carrier('["traceparent"]') is None
    assert tracing.parse_carrier(json.dumps({"traceparent": good})) == {"traceparent": good}


def test_without_opentelemetry_enqueue_works_and_records_nothing(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    # A fresh interpreter in which `import opentelemetry` fails, as when it is not installed.
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import psycopg, jobfleet\n"
        f"with psycopg.connect({db_url!r}) as conn:\n"
        "    print(jobfleet.enqueue(conn, 'echo'))\n"
        "    print(*jobfleet.enqueue_many(conn, 'echo', [1, 2]))\n"
        "assert 'opentelemetry.trace' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    ids = [int(n) for n in done.stdout.split()]
    assert len(ids) == 3
    rows = conn.execute("SELECT trace_context FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall()
    assert rows == [(None,)] * 3
