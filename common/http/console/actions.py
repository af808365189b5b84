"""The console's actions (POST, each with the session's CSRF token): sign in and out, cancel,
retry, retry every dead job, purge the dead jobs, pause and resume a queue. Each calls what
the CLI and the API call (jobfleet.admin, jobfleet.client), and answers with a redirect to the
page it came from (303), its outcome in a one-shot notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from jobfleet import admin, client
from jobfleet.errors import JobfleetError
from jobfleet.http.console.auth import (
    COOKIE,
    Gate,
    Viewer,
    check_csrf,
    form_fields,
    same_origin,
    set_notice,
    to_page,
)
from jobfleet.http.console.render import PREFIX, page
from jobfleet.http.limits import AddressLimit, client_address
from jobfleet.log import get_logger
from jobfleet.options import ID_MAX, OptionError

log = get_logger("jobfleet.http.console")
JobId = Annotated[int, Path(ge=1, le=ID_MAX)]
QueueName = Annotated[str, Path(min_length=1, max_length=128)]


def action_routes(app: FastAPI, gate: Gate) -> None:
    failures = AddressLimit()
    connect = gate.connect

    @app.post(f"{PREFIX}/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        address = client_address(request.client)
        if failures.wait(address) > 0:
            return _signin_page(429, "too many failed sign-ins from this address; wait a minute")
        if not same_origin(request):
            return _signin_page(403, "the sign-in form was posted from another site")
        fields = form_fields(await request.body())
        outcome = await run_in_threadpool(gate.sign_in, fields.get("key", "").strip())
        if isinstance(outcome, str):
            failures.failed(address)
            log.warning("console sign-in refused", extra={"address": address, "why": outcome})
            return _signin_page(401, outcome)
        token, name = outcome
        log.info("console sign-in", extra={"key": name, "address": address})
        response = RedirectResponse(PREFIX, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return response

    async def form_action(
        request: Request, scope: str | None, work: Callable[[Viewer], str], back: str
    ) -> Response:
        viewer = await run_in_threadpool(gate.require_viewer, request)
        check_csrf(viewer, form_fields(await request.body()))
        if scope is not None:
            viewer.require(scope)
        try:
            notice = await run_in_threadpool(work, viewer)
        except (JobfleetError, OptionError) as exc:
            notice = str(exc)
        # Who did what from the console: an audit trail in the structured log.
        log.info(
            "console action",
            extra={"key": viewer.name, "path": request.url.path, "outcome": notice},
        )
        response = to_page(back)
        set_notice(response, notice)
        return response

    @app.post(f"{PREFIX}/sign-out", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        viewer = await run_in_threadpool(gate.require_viewer, request)
        check_csrf(viewer, form_fields(await request.body()))
        log.info("console sign-out", extra={"key": viewer.name})
        response = RedirectResponse(PREFIX, status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    def on_conn(work: Callable[[Any], str]) -> Callable[[Viewer], str]:
        def run(viewer: Viewer) -> str:
            with connect() as conn:
                return work(conn)

        return run

    @app.post(PREFIX + "/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, job_id: JobId) -> Response:
        def work(conn: Any) -> str:
            state = admin.cancel(conn, job_id)
            if state == "running":
                return f"job {job_id} is being stopped by its node"
            return f"job {job_id} cancelled"

        return await form_action(request, "cancel", on_conn(work), f"/jobs/{job_id}")

    @app.post(PREFIX + "/jobs/{job_id}/retry", include_in_schema=False)
    async def retry(request: Request, job_id: JobId) -> Response:
        def work(conn: Any) -> str:
            client.retry(job_id, conn=conn)
            return f"job {job_id} queued again"

        return await form_action(request, "admin", on_conn(work), f"/jobs/{job_id}")

    @app.post(PREFIX + "/dead/{job_id}/retry", include_in_schema=False)
    async def retry_dead(request: Request, job_id: JobId) -> Response:
        def work(conn: Any) -> str:
            admin.dlq_retry(conn, job_id)
            return f"job {job_id} queued again"

        return await form_action(request, "admin", on_conn(work), "/dead")

    @app.post(f"{PREFIX}/dead/retry-all", include_in_schema=False)
    async def retry_all(request: Request) -> Response:
        def work(conn: Any) -> str:
            return f"{len(admin.dlq_retry(conn, None))} dead jobs queued again"

        return await form_action(request, "admin", on_conn(work), "/dead")

    @app.post(f"{PREFIX}/dead/purge", include_in_schema=False)
    async def purge(request: Request) -> Response:
        def work(conn: Any) -> str:
            return f"{admin.dlq_purge(conn, None)} dead jobs deleted"

        return await form_action(request, "admin", on_conn(work), "/dead")

    def steer(name: str, paused: bool) -> Callable[[Any], str]:
        def work(conn: Any) -> str:
            now = admin.set_paused(conn, name, paused)
            return f"queue {name} {'paused' if now else 'resumed'}"

        return work

    @app.post(PREFIX + "/queues/{name}/pause", include_in_schema=False)
    async def pause(request: Request, name: QueueName) -> Response:
        return await form_action(request, "admin", on_conn(steer(name, True)), "/queues")

    @app.post(PREFIX + "/queues/{name}/resume", include_in_schema=False)
    async def resume(request: Request, name: QueueName) -> Response:
        return await form_action(request, "admin", on_conn(steer(name, False)), "/queues")


def _signin_page(status: int, error: str) -> HTMLResponse:
    return page("signin.html", status, title="Sign in", error=error, current="")
