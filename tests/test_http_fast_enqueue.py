"""POST /jobs answered in front of FastAPI (jobfleet.http.fast_enqueue): a good request gets
what the route would answer, byte for byte; any other is handed to the route whole, which
answers it as before, and a key's token is never taken twice for one request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from jobfleet.http.app import create_app
from jobfleet.http.fast_enqueue import FastEnqueue, _bearer, _headers, caller_trace
from jobfleet.settings import load_settings
from tests.conftest import scalar
from tests.http_support import bearer, make_key

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Counted:
    """The FastAPI app behind the fast path, counting the requests handed to it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[TestClient, Counted]]:
    app: Any = create_app(db_url, load_settings())
    fast = app.app.app  # RequestMetrics -> BodySizeLimit -> FastEnqueue
    assert isinstance(fast, FastEnqueue)
    fast.app = counted = Counted(fast.app)  # type: ignore[assignment]
    with TestClient(app) as client:
        yield client, counted


def test_a_good_request_is_answered_as_the_route_answers_it(
    served: tuple[TestClient, Counted], conn: psycopg.Connection[Any]
) -> None:
    client, route = served
    headers = {**bearer(make_key(conn, "fast", "enqueue,read")), "traceparent": TRACEPARENT}
    odd = {"s": 'é ☃ \u2028 \\ " \\u0000', "f": 12.75, "e": 1.5e20, "big": 2**62, "neg": -0.25}
    body = {"type": "echo", "payload": odd, "priority": 7, "idempotency_key": "k1"}
    created = client.post("/jobs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == "application/json"
    assert route.calls == 0  # answered in front of FastAPI
    job_id = created.json()["id"]
    # GET /jobs/{id} is the route's own Job serialization of the same row: the same bytes.
    shown = client.get(f"/jobs/{job_id}", headers=headers)
    assert route.calls == 1
    assert created.content == shown.content
    assert created.json()["payload"] == odd and created.json()["priority"] == 7
    stored = scalar(conn, "SELECT trace_context->>'traceparent' FROM jobs WHERE id = %s", (job_id,))
    assert stored == TRACEPARENT
    # The idempotency key again: 200 and the job that holds it.
    again = client.post("/jobs", json={**body, "payload": None}, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == job_id
    assert route.calls == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


@pytest.mark.parametrize(
    ("headers", "body", "status", "error"),
    [
        ({}, {"type": "echo"}, 401, "unauthorized"),
        ({"Authorization": "Bearer jf_nope"}, {"type": "echo"}, 401, "unauthorized"),
        ({"Authorization": "Basic abc"}, {"type": "echo"}, 401, "unauthorized"),
        ("read-only", {"type": "echo"}, 403, "forbidden"),
        ("good", {"type": ""}, 422, "invalid"),
        ("good", {"type": "echo", "surprise": 1}, 422, "invalid"),
        ("good", b'{"type": "echo", "payload": NaN}', 422, "invalid"),
        ("good", {"type": "echo", "backoff": "sideways"}, 422, "invalid"),
        ("good", b"{not json", 400, "bad_request"),
        ("good", [1, 2], 422, "invalid"),
    ],
)
def test_every_other_request_is_answered_by_the_route(
    served: tuple[TestClient, Counted],
    conn: psycopg.Connection[Any],
    headers: Any,
    body: Any,
    status: int,
    error: str,
) -> None:
    client, route = served
    if headers == "good":
        headers = bearer(make_key(conn, "good", "enqueue"))
    elif headers == "read-only":
        headers = bearer(make_key(conn, "reader", "read"))
    if isinstance(body, bytes):
        answer = client.post(
            "/jobs", content=body, headers={**headers, "Content-Type": "application/json"}
        )
    else:
        answer = client.post("/jobs", json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert route.calls == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_a_body_sent_as_a_form_is_answered_by_the_route(
    served: tuple[TestClient, Counted], conn: psycopg.Connection[Any]
) -> None:
    client, route = served
    headers = {**bearer(make_key(conn, "curl", "enqueue")), "Content-Type": "text/plain"}
    answer = client.post("/jobs", content=b'{"type": "echo"}', headers=headers)
    assert route.calls == 1
    assert answer.status_code == 422, answer.text
    assert "Content-Type: application/json" in answer.json()["message"]
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_a_rate_limited_key_pays_one_token_per_request_whoever_answers(
    served: tuple[TestClient, Counted], conn: psycopg.Connection[Any]
) -> None:
    client, route = served
    # A burst of one token, refilled once an hour: the first request that takes it is the
    # only one to pass.
    bad_first = bearer(make_key(conn, "bad-first", "enqueue", rate="1/h"))
    refused = client.post("/jobs", json={"type": "echo", "surprise": 1}, headers=bad_first)
    assert refused.status_code == 422, refused.text  # not 429: the fast path took no token
    assert client.post("/jobs", json={"type": "echo"}, headers=bad_first).status_code == 429
    good_first = bearer(make_key(conn, "good-first", "enqueue", rate="1/h"))
    calls = route.calls
    assert client.post("/jobs", json={"type": "echo"}, headers=good_first).status_code == 201
    assert route.calls == calls  # answered in front, its token taken there
    over = client.post("/jobs", json={"type": "echo"}, headers=good_first)
    assert over.status_code == 429 and over.json()["error"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def test_headers_are_read_as_the_route_reads_them() -> None:
    scope = {
        "headers": [
            (b"authorization", b"Bearer first"),
            (b"authorization", b"Bearer second"),
            (b"tracestate", b"a=1"),
            (b"tracestate", b"b=2"),
        ]
    }
    headers = _headers(scope)
    assert _bearer(headers[b"authorization"]) == "first"
    assert headers[b"tracestate"] == b"a=1,b=2"
    assert _bearer(b"bearer k") == "k"  # the scheme is case-insensitive
    assert _bearer(b"Bearer") is None and _bearer(b"Basic k") is None and _bearer(None) is None
    assert caller_trace(None, "a=1") is None
    assert caller_trace("tp", None) == {"traceparent": "tp"}
    assert caller_trace("tp", "a=1") == {"traceparent": "tp", "tracestate": "a=1"}
