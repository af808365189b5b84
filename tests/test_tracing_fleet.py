"""Tracing across the fleet: jobs enqueued inside a span run, in real forked workers, in
attempt spans that continue that trace. The workers' tracer provider is set up as the README
tells users to, in an on_worker_start hook; its in-memory exporter's spans are written out by
an on_worker_stop hook (a burst node's workers leave cleanly), one file per worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import jobfleet
from tests.fleet_support import handler_module

TRACED_APP = """
import json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from jobfleet.worker import handler, on_worker_start, on_worker_stop

exporter = InMemorySpanExporter()

@on_worker_start
def start_tracing():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

@on_worker_stop
def write_spans():
    path = os.path.join(os.environ["SPANS_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump([json.loads(s.to_json()) for s in exporter.get_finished_spans()], out)

@handler("charge")
def charge(payload):
    with trace.get_tracer("app").start_as_current_span("call the bank"):
        return payload

@handler("refuse")
def refuse(payload):
    raise ValueError("card declined")
"""


def test_attempt_spans_continue_the_enqueuers_trace(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Path
) -> None:
    env = handler_module(tmp_path, "traced_app", TRACED_APP)
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    env["SPANS_DIR"] = str(spans_dir)
    provider = TracerProvider()
    enqueued = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(enqueued))
    with provider.get_tracer("web").start_as_current_span("POST /orders") as request:
        charged = jobfleet.enqueue(conn, "charge", {"order": 7})
        refused = jobfleet.enqueue(conn, "refuse", max_attempts=1)
        batch = jobfleet.enqueue_many(conn, "charge", [{"order": 8}, {"order": 9}])
    alone = jobfleet.enqueue(conn, "charge", {"order": 10})  # no span: a trace of its own
    node = fleet("a", "--workers", "2", "--handlers", "traced_app", "--burst", env=env)
    assert node.wait(60) == 0, node.log()[-2000:]
    assert [s.name for s in enqueued.get_finished_spans()] == ["POST /orders"]

    spans = [s for f in spans_dir.iterdir() for s in json.loads(f.read_text())]
    attempts = {
        s["attributes"]["jobfleet.job.id"]: s for s in spans if s["name"] != "call the bank"
    }
    assert sorted(attempts) == sorted([charged, refused, *batch, alone]), spans
    web = request.get_span_context()
    for job_id in [charged, refused, *batch]:
        span = attempts[job_id]
        assert span["context"]["trace_id"] == f"0x{web.trace_id:032x}", span
        assert span["parent_id"] == f"0x{web.span_id:016x}", span
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["attributes"]["jobfleet.job.attempt"] == 1
        assert span["attributes"]["jobfleet.node"] == "a"

    ok = attempts[charged]
    assert ok["name"] == "jobfleet.job charge"
    assert ok["attributes"]["jobfleet.job.type"] == "charge"
    assert ok["attributes"]["jobfleet.job.outcome"] == "succeeded"
    assert ok["status"]["status_code"] == "UNSET"
    # The handler's own span is a child of its attempt's.
    inner = [s for s in spans if s["name"] == "call the bank"]
    assert {(s["context"]["trace_id"], s["parent_id"]) for s in inner} >= {
        (ok["context"]["trace_id"], ok["context"]["span_id"])
    }

    failed = attempts[refused]
    assert failed["name"] == "jobfleet.job refuse"
    assert failed["attributes"]["jobfleet.job.outcome"] == "failed"
    assert failed["status"]["status_code"] == "ERROR"
    assert failed["status"]["description"] == "ValueError: card declined"
    assert [e["attributes"]["exception.type"] for e in failed["events"]] == ["ValueError"]
    assert jobfleet.get(refused, conn=conn)["state"] == "dead"

    own = attempts[alone]
    assert own["parent_id"] is None
    assert own["context"]["trace_id"] != f"0x{web.trace_id:032x}"
    assert own["attributes"]["jobfleet.job.outcome"] == "succeeded"
