"""The HTTP API: jobs over REST behind API keys and a cluster-wide rate limit, plus the node's
Prometheus metrics and its health checks.

Handlers are plain (sync) functions run in the server's thread pool on pooled connections;
they call the same code as the CLI, so the two cannot disagree. `role="metrics"` serves only
/metrics, /healthz and /readyz (`supervisor --metrics-port`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, Literal

import psycopg_pool.base
import psycopg_pool.pool
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.security import HTTPBearer
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp

from jobfleet import admin, apikeys, metrics
from jobfleet.db import Connection, bounded_transaction
from jobfleet.http import console, docs, errors
from jobfleet.http.access import (
    UNAUTHENTICATED,
    Credentials,
    check_rate,
    check_scope,
    unauthorized,
)
from jobfleet.http.bulk_routes import bulk_routes
from jobfleet.http.enqueue_routes import Enqueuer, enqueue_routes
from jobfleet.http.errors import ApiError, responses
from jobfleet.http.fast_enqueue import FastEnqueue, caller_trace
from jobfleet.http.health_routes import health_routes
from jobfleet.http.limits import AddressLimit, BodySizeLimit, client_address
from jobfleet.http.pools import pool_arguments
from jobfleet.http.queue_routes import queue_routes
from jobfleet.http.request_metrics import RequestMetrics
from jobfleet.http.retry_route import retry_route
from jobfleet.http.schemas import (
    CancelResult,
    Job,
    JobPage,
    State,
)
from jobfleet.options import ID_MAX
from jobfleet.settings import Settings
from jobfleet.tolerant import tolerate

Role = Literal["api", "metrics"]
POOL_MAX = 8
# How long a request waits for a pooled connection before answering 503.
POOL_WAIT_SECONDS = 5.0
READY_WAIT_SECONDS = 2.0
LIST_MAX = 1000
# Job ids are bigints: a larger number is a bad request (422), not a query that fails.
JobId = Annotated[int, Path(ge=1, le=ID_MAX)]


class _RetryEverySecond(psycopg_pool.base.AttemptWithBackoff):
    """psycopg-pool doubles its reconnect delay without bound: after a minute's outage its
    next try may be a minute away, and /readyz and every request would answer 503 that long
    after the database is back. Retrying once a second costs nothing while it is away."""

    DELAY_BACKOFF = 1.0


psycopg_pool.pool.AttemptWithBackoff = _RetryEverySecond  # type: ignore[attr-defined]

bearer = HTTPBearer(auto_error=False, description="an API key from `jobfleet apikey create`")
bearer_dep = Depends(bearer)


def create_app(url: str, config: Settings, role: Role = "api") -> ASGIApp:
    pool = ConnectionPool(
        url,
        **pool_arguments(config, max_size=POOL_MAX, wait=POOL_WAIT_SECONDS),
        check=ConnectionPool.check_connection,  # a restarted database: no dead connections
        configure=tolerate,  # rows with values Python cannot hold still read
        name=f"jobfleet-{role}",
    )

    enqueuer = Enqueuer(url, config, pool_wait=POOL_WAIT_SECONDS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=False)  # the API comes up even while the database is away
        try:
            async with enqueuer.serving():
                yield
        finally:
            pool.close()

    app = FastAPI(
        title="jobfleet",
        version="1",
        description=(
            "Jobs on PostgreSQL. Send `Authorization: Bearer <key>` (keys come from "
            "`jobfleet apikey create`). Every error has the same body: `error` (a code), "
            "`message` (what was wrong and how to fix it), `field` (422)."
        ),
        lifespan=lifespan,
        # `curl -d '{...}'` sends no JSON content type; the body is JSON all the same.
        strict_content_type=False,
        redirect_slashes=False,  # /jobs/ is a 404 with the error body, not a bare 307
        docs_url=None,  # ours, with local assets (http/docs.py)
        redoc_url=None,
    )
    errors.install(app)

    @contextmanager
    def connection(wait: float = POOL_WAIT_SECONDS) -> Iterator[Connection]:
        """A pooled connection in a transaction bounded by the statement and idle timeouts,
        committed when the block ends (rolled back if it raises)."""
        with pool.connection(timeout=wait) as conn, bounded_transaction(conn, config):
            yield conn

    def request_connection() -> Iterator[Connection]:
        """One pooled connection per request, for the key check and the work, in one
        transaction: a request that fails leaves nothing half-written."""
        with connection() as conn:
            yield conn

    # scope="function": the transaction commits when the handler returns, before the response
    # is sent (the default, "request", would commit after it: a client told 201 could read
    # the job's id back before the job was there).
    conn_dep = Depends(request_connection, scope="function")
    failures = AddressLimit()

    # `async def` for the dependencies that do no I/O: a plain one costs a trip through the
    # server's thread pool per request.
    async def sign_in_gate(request: Request, credentials: Credentials = bearer_dep) -> str:
        """Before any database work: an address over its failed sign-ins is refused (429),
        and a request without a well-formed key is refused (401) and counted."""
        address = client_address(request.client)
        wait = failures.wait(address)
        if wait > 0:
            metrics.metrics().rate_limited.labels(UNAUTHENTICATED).inc()
            raise ApiError(
                429,
                "rate_limited",
                "too many requests without a valid API key from this address; retry after "
                "the wait, with a key from `jobfleet apikey create`",
                retry_after=round(wait, 3),
            )
        if credentials is None or not apikeys.well_formed(credentials.credentials):
            failures.failed(address)
            raise unauthorized(credentials)
        return address

    gate_dep = Depends(sign_in_gate)

    def access(scope: str) -> Any:
        """A dependency: the request's connection, once its key is good, has `scope` and is
        within its rate. Dependencies run before the body is validated, so a request without
        a good key learns nothing about its body: 401 first. They run in order: the gate
        before a pooled connection is taken."""

        def check(
            credentials: Credentials = bearer_dep,
            address: str = gate_dep,
            conn: Connection = conn_dep,
        ) -> Connection:
            try:
                _authorize(conn, credentials, scope)
            except ApiError as exc:
                if exc.status == 401:
                    failures.failed(address)
                raise
            return conn

        return Depends(check)

    if role == "api":
        enqueue_routes(
            app,
            enqueuer,
            config,
            bearer_dep=bearer_dep,
            gate_dep=gate_dep,
            caller_trace_dep=caller_trace_dep,
            failures=failures,
        )
        _job_routes(app, access)
        queue_routes(app, access)
        bulk_routes(app, access, config)
        retry_route(app, access)
        console.install(app, connection, config)
        docs.install(app)
    health_routes(app, connection, ready_wait=READY_WAIT_SECONDS)
    served: ASGIApp = app
    if role == "api":
        served = FastEnqueue(app, enqueuer, config, failures)
    # Metrics outermost, so a 413 the size limit answers is counted too.
    return RequestMetrics(BodySizeLimit(served, config.max_request_bytes))


def _authorize(conn: Connection, credentials: Credentials, scope: str) -> None:
    if credentials is None:
        raise unauthorized(credentials)
    key = apikeys.verify_key(conn, credentials.credentials)
    if key is None:
        raise unauthorized(credentials)
    check_scope(key, scope)
    check_rate(key, apikeys.take_token(conn, key))


async def _caller_trace(
    request: Request,
    traceparent: Annotated[
        str | None,
        Header(
            description="The caller's W3C trace context, stored on the job so its attempts "
            "continue the trace; a malformed one is ignored (the job is enqueued untraced)"
        ),
    ] = None,
    tracestate: Annotated[
        str | None,
        Header(description="W3C vendor trace state, kept with a valid `traceparent`"),
    ] = None,
) -> dict[str, str] | None:
    """The request's W3C trace context headers (fast_enqueue.caller_trace). A tracestate sent
    as several header lines is one list (RFC 9110 joins them with commas)."""
    if tracestate is not None:
        tracestate = ",".join(request.headers.getlist("tracestate"))
    return caller_trace(traceparent, tracestate)


caller_trace_dep = Depends(_caller_trace)


def _job_routes(app: FastAPI, access: Callable[[str], Any]) -> None:
    can_read, can_cancel = access("read"), access("cancel")

    @app.get(
        "/jobs/{job_id}",
        response_model=Job,
        responses=responses(401, 403, 404, 422, 429, 503),
        summary="A job with its attempts, progress and result",
    )
    def get_job(job_id: JobId, conn: Connection = can_read) -> dict[str, Any]:
        return admin.show_job(conn, job_id)

    @app.get(
        "/jobs",
        response_model=JobPage,
        responses=responses(401, 403, 422, 429, 503),
        summary="Jobs, newest first; page with `after`",
    )
    def list_jobs(
        state: State | None = None,
        type: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        queue: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        node: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=LIST_MAX)] = 50,
        after: Annotated[
            int | None,
            Query(ge=1, le=ID_MAX, description="the `next_after` of the previous page"),
        ] = None,
        conn: Connection = can_read,
    ) -> JobPage:
        try:
            jobs = admin.list_jobs(
                conn, state=state, type=type, queue=queue, node=node, limit=limit, before=after
            )
        except ValueError as exc:
            option = getattr(exc, "option", "query")
            raise ApiError(422, "invalid", str(exc), field=f"query.{option}") from None
        next_after = jobs[-1]["id"] if len(jobs) == limit else None
        return JobPage.model_validate({"jobs": jobs, "next_after": next_after})

    @app.delete(
        "/jobs/{job_id}",
        response_model=CancelResult,
        responses={
            202: {
                "model": CancelResult,
                "description": "The job is running: its node stops it (state still running)",
            },
            **responses(401, 403, 404, 409, 422, 429, 503),
        },
        summary="Cancel a job: a queued one at once, a running one by stopping its worker",
    )
    def cancel_job(
        job_id: JobId, response: Response, conn: Connection = can_cancel
    ) -> CancelResult:
        state = admin.cancel(conn, job_id)
        if state == "running":
            response.status_code = 202
        return CancelResult.model_validate({"id": job_id, "state": state})
