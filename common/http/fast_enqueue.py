"""`POST /jobs` without the framework's cost on the way: a request whose key, scope, rate and
body are all good is answered here, in front of FastAPI; any other is handed to FastAPI whole
(its body replayed), which answers it exactly as it always has.

Measured on this repository's 2-core machine, FastAPI's routing, dependency solving, body and
response handling cost more CPU per request than the enqueue itself (0.7 ms of the HTTP
process's 1.4 ms for a lone request), and at 32 concurrent clients the CPU is the bound. The
checks here are the very functions the route's dependencies call, in the same order, and the
answer is made by the route's own response field, so the two paths cannot answer a good
request differently (tests/test_http_fast_enqueue.py compares them). A request this path
gives up on has cost nothing that shows: no token taken, nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from jobfleet import apikeys
from jobfleet.enqueue import one_job
from jobfleet.http.enqueue_routes import Enqueuer
from jobfleet.http.errors import error_answer
from jobfleet.http.limits import AddressLimit, client_address
from jobfleet.http.schemas import NewJob
from jobfleet.settings import Settings

PATH = "/jobs"
# What the route answers with: a 201 for a new job, a 200 when its place was held.
_HEADERS = [(b"content-type", b"application/json")]


class FastEnqueue:
    """ASGI middleware in front of the FastAPI `app` that serves `POST /jobs` when nothing
    about the request needs an error answer."""

    def __init__(
        self,
        app: FastAPI,
        enqueuer: Enqueuer,
        config: Settings,
        failures: AddressLimit,
    ) -> None:
        self.app, self.enqueuer, self.failures = app, enqueuer, failures
        self.limit = config.max_payload_bytes
        self.route = _route(app)
        field = self.route.response_field
        assert field is not None  # the route declares response_model=Job
        self._field = field

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before it finished sending
        job = await self._good_job(scope, body)
        if job is None:
            await self.app(scope, _replayed(body, receive), send)
            return
        scope["route"] = self.route  # what the request metrics name it by
        try:
            status, content = await self._enqueue(job)
        except Exception as exc:  # written or not, it is answered here: never twice
            response = await error_answer(Request(scope), exc)
            await response(scope, receive, send)
            return
        headers = [(b"content-length", str(len(content)).encode()), *_HEADERS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _good_job(self, scope: Scope, body: bytes) -> dict[str, Any] | None:
        """The job of a request whose key, scope, rate and body are good, its token taken;
        None for any other request (FastAPI answers it)."""
        headers = _headers(scope)
        presented = _bearer(headers.get(b"authorization"))
        if presented is None or not apikeys.well_formed(presented):
            return None
        if self.failures.wait(client_address(scope.get("client"))) > 0:
            return None
        if b"json" not in headers.get(b"content-type", b""):
            return None  # FastAPI says what a body of another kind should be
        lane = self.enqueuer.lane
        try:
            key = await lane.keys.submit(presented)
            if key is None or "enqueue" not in key.scopes:
                return None
            job = self._job(body, headers)
            if job is None:
                return None
            if key.rate_per_second is not None and not (await lane.take_token(key)).allowed:
                return None  # nothing was taken: the route tries again, and answers 429
        except Exception:
            return None  # the database is away: the route meets it again, and says so
        return job

    async def _enqueue(self, job: dict[str, Any]) -> tuple[int, bytes]:
        """The job added (or its holder found): the route's status and body for it."""
        shape, created = await self.enqueuer.lane.add(job)
        value, errors = self._field.validate(shape, {}, loc=("response",))
        if errors:
            raise RuntimeError(f"POST /jobs: a job's shape does not fit its schema: {errors}")
        return (201 if created else 200), self._field.serialize_json(value, by_alias=True)

    def _job(self, body: bytes, headers: dict[bytes, bytes]) -> dict[str, Any] | None:
        """The job a good body asks for, checked as the route checks it; None for a body the
        route would refuse."""
        try:
            new = NewJob.model_validate(json.loads(body))
            trace = caller_trace(
                _text(headers.get(b"traceparent")), _text(headers.get(b"tracestate"))
            )
            return one_job(new.type, new.payload, new.options(), self.limit, trace)
        except (ValueError, ValidationError, UnicodeDecodeError):
            return None


def caller_trace(traceparent: str | None, tracestate: str | None) -> dict[str, str] | None:
    """The request's W3C trace context headers as a carrier, unchecked: the enqueue checks
    them as it checks its own (jobfleet.tracing), and a bad one is never an error.
    `tracestate`: every line of the header, joined by commas (RFC 9110)."""
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    return carrier


def _route(app: FastAPI) -> APIRoute:
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == PATH and "POST" in (route.methods or ()):
            return route
    raise LookupError(f"the app has no POST {PATH} route")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name: the first line of each, as Starlette reads
    a single-valued header, except `tracestate`, whose lines are one list."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name not in found:
            found[name] = value
        elif name == b"tracestate":
            found[name] += b"," + value
    return found


def _bearer(value: bytes | None) -> str | None:
    """The credentials of `Authorization: Bearer <credentials>`, as FastAPI's HTTPBearer reads
    them; None for anything else."""
    if value is None:
        return None
    scheme, _, credentials = value.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replayed(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A receive that gives the body already read, then what the client sends next (its
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
