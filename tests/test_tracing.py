"""Tracing, enqueue side: every enqueue path stores the caller's active trace context on the
job (checked: a malformed traceparent stores nothing, an oversized tracestate is dropped),
and nothing when no span is active or OpenTelemetry is not installed. POST /jobs also stores
a web client's `traceparent` and `tracestate` headers, checked alike, with or without
OpenTelemetry on the API host."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import jobfleet
from jobfleet import tracing
from jobfleet.http.app import create_app
from jobfleet.settings import load_settings
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


# -- POST /jobs continues a web client's trace from its headers ------------------------------

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_post_jobs_stores_the_callers_traceparent_and_tracestate(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    headers = {**key, "traceparent": CALLER, "tracestate": "rojo=00f067aa0ba902b7"}
    one = client.post("/jobs", json={"type": "echo"}, headers=headers)
    assert one.status_code == 201, one.text
    batch = client.post(
        "/jobs:batch", json={"jobs": [{"type": "echo"}, {"type": "noop"}]}, headers=headers
    )
    assert batch.status_code == 201, batch.text
    expected = {"traceparent": CALLER, "tracestate": "rojo=00f067aa0ba902b7"}
    for job_id in [one.json()["id"], *batch.json()["ids"]]:
        assert stored(conn, job_id) == expected, job_id
    # A tracestate in several header lines is one list; no header, no trace.
    split = [("traceparent", CALLER), ("tracestate", "a=1"), ("tracestate", "b=2")]
    again = client.post("/jobs", json={"type": "echo"}, headers=[*key.items(), *split])
    assert stored(conn, again.json()["id"]) == {"traceparent": CALLER, "tracestate": "a=1,b=2"}
    plain = client.post("/jobs", json={"type": "echo"}, headers=key)
    assert stored(conn, plain.json()["id"]) is None


@pytest.mark.parametrize(
    "trace_headers",
    [
        {"traceparent": "x" * 10_000},
        {"traceparent": CALLER.upper()},
        {"traceparent": CALLER + "-extra"},
        {"traceparent": "ff" + CALLER[2:]},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": "", "tracestate": "a=b"},
        {"tracestate": "a=b"},
    ],
)
def test_post_jobs_ignores_a_bad_traceparent_and_enqueues_untraced(
    client: TestClient,
    key: dict[str, str],
    conn: psycopg.Connection[Any],
    trace_headers: dict[str, str],
) -> None:
    one = client.post("/jobs", json={"type": "echo"}, headers={**key, **trace_headers})
    assert one.status_code == 201, one.text
    batch = client.post(
        "/jobs:batch", json={"jobs": [{"type": "echo"}]}, headers={**key, **trace_headers}
    )
    assert batch.status_code == 201, batch.text
    assert scalar(conn, "SELECT count(*) FROM jobs") == 2
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE trace_context IS NOT NULL") == 0


def test_post_jobs_drops_an_oversized_tracestate_and_keeps_the_trace(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    for state in ["k=" + "v" * 600, "a=\x7f"]:
        headers = {**key, "traceparent": CALLER, "tracestate": state}
        one = client.post("/jobs", json={"type": "echo"}, headers=headers)
        assert one.status_code == 201, one.text
        assert stored(conn, one.json()["id"]) == {"traceparent": CALLER}


def test_an_api_process_that_traces_stores_its_own_span_over_the_header(
    conn: psycopg.Connection[Any], db_url: str, key: dict[str, str], tracer: trace.Tracer
) -> None:
    """Under opentelemetry-instrument the request's server span is active in the handler (a
    child of the caller's): the job continues from it, keeping the API's hop in the trace."""
    app = create_app(db_url, load_settings())
    spans: list[trace.Span] = []

    async def instrumented(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        with tracer.start_as_current_span("POST /jobs") as span:
            spans.append(span)
            await app(scope, receive, send)

    with TestClient(instrumented) as traced:
        one = traced.post("/jobs", json={"type": "echo"}, headers={**key, "traceparent": CALLER})
    assert one.status_code == 201, one.text
    assert stored(conn, one.json()["id"]) == {"traceparent": traceparent(spans[0])}


def test_post_jobs_stores_the_header_without_opentelemetry_in_jobfleet(
    client: TestClient,
    key: dict[str, str],
    conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stored value is the checked header, not something OpenTelemetry makes: with
    jobfleet's capture as it is when `import opentelemetry` fails, the header still goes on
    the job. (FastAPI 0.165 imports the OpenTelemetry API itself, so an API process cannot be
    run without it; this is the branch jobfleet takes when it is missing.)"""
    monkeypatch.setattr(tracing, "_capture", lambda: None)
    one = client.post("/jobs", json={"type": "echo"}, headers={**key, "traceparent": CALLER})
    assert one.status_code == 201, one.text
    assert stored(conn, one.json()["id"]) == {"traceparent": CALLER}
