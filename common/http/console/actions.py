"""The console's actions (POST, each with the session's CSRF token): sign in and out, cancel,
retry, retry every dead job, purge the dead jobs, pause and resume a queue, and the bulk ones:
cancel the queued jobs a jobs page's filter matches, queue the dead jobs of a type again. Each
calls what the CLI and the API call (jobfleet.admin, jobfleet.client, jobfleet.bulk), and
answers with a redirect to the page it came from (303), its outcome in a one-shot notice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from jobfleet import admin, bulk, client
from jobfleet.db import Connection
from jobfleet.errors import JobfleetError
from jobfleet.http.console.auth import (
    COOKIE,
    Gate,
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
from jobfleet.settings import Settings

log = get_logger("jobfleet.http.console")
JobId = Annotated[int, Path(ge=1, le=ID_MAX)]
QueueName = Annotated[str, Path(min_length=1, max_length=128)]


Fields = dict[str, str]


def action_routes(app: FastAPI, gate: Gate, config: Settings | None = None) -> None:
    failures = AddressLimit()
    connect = gate.connect
    batches = bulk.Batches(config=config)

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
        request: Request,
        scope: str | None,
        work: Callable[[Fields], str],
        back: str | Callable[[Fields], str],
    ) -> Response:
        """Check the session, the CSRF token and `scope`; run `work` on the form's fields;
        log who did what; back to the page (`back`, or what it makes of the fields)."""
        viewer = await run_in_threadpool(gate.require_viewer, request)
        fields = form_fields(await request.body())
        check_csrf(viewer, fields)
        if scope is not None:
            viewer.require(scope)
        try:
            notice = await run_in_threadpool(work, fields)
        except (JobfleetError, OptionError) as exc:
            notice = str(exc)
        # Who did what from the console: an audit trail in the structured log.
        extra = {"key": viewer.name, "path": request.url.path, "outcome": notice}
        form = {name: value for name, value in fields.items() if name != "csrf"}
        log.info("console action", extra={**extra, "form": form} if form else extra)
        response = to_page(back if isinstance(back, str) else back(fields))
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

    def on_conn(work: Callable[[Any], str]) -> Callable[[Fields], str]:
        def run(fields: Fields) -> str:
            with connect() as conn:
                return work(conn)

        return run

    def in_batches(change: Callable[[Connection], int], notice: Callable[[int], str]) -> str:
        """A bulk change on a pooled connection outside any transaction: each of its batches
        commits on its own (jobfleet.bulk), as the API's bulk routes run it."""
        with connect() as conn:
            conn.commit()  # the empty transaction `connect` began; then autocommit
            return notice(change(conn))

    @app.post(f"{PREFIX}/jobs/cancel-matching", include_in_schema=False)
    async def cancel_matching(request: Request) -> Response:
        def work(fields: Fields) -> str:
            where = bulk.JobFilter(_field(fields, "type"), _field(fields, "queue"))
            return in_batches(
                lambda conn: bulk.cancel_queued(conn, where, batches),
                lambda n: f"Cancelled {_jobs(n)}{_described(where)}",
            )

        return await form_action(request, "cancel", work, _jobs_page)

    @app.post(f"{PREFIX}/dead/retry-type", include_in_schema=False)
    async def retry_type(request: Request) -> Response:
        def work(fields: Fields) -> str:
            job_type = _field(fields, "type")
            if job_type is None:
                raise OptionError("type", "give the type of the dead jobs to queue again")
            where = bulk.JobFilter(type=job_type)
            return in_batches(
                lambda conn: bulk.retry_dead(conn, where, batches),
                lambda n: f"Queued {_jobs(n)} again (the dead jobs of type {job_type})",
            )

        return await form_action(request, "admin", work, "/dead")

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
        def work(fields: Fields) -> str:
            return in_batches(
                lambda conn: bulk.retry_dead(conn, bulk.JobFilter(every=True), batches),
                lambda n: f"{n} dead jobs queued again",
            )

        return await form_action(request, "admin", work, "/dead")

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


def _field(fields: Fields, name: str) -> str | None:
    return fields.get(name, "").strip() or None


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _described(where: bulk.JobFilter) -> str:
    of_type = f" of type {where.type}" if where.type else ""
    return of_type + (f" in queue {where.queue}" if where.queue else "")


def _jobs_page(fields: Fields) -> str:
    """Back to the jobs page the form was on, with its filters: the jobs shown cancelled."""
    shown = {name: _field(fields, name) for name in ("state", "type", "queue")}
    query = urlencode({name: value for name, value in shown.items() if value})
    return f"/jobs?{query}" if query else "/jobs"


def _signin_page(status: int, error: str) -> HTMLResponse:
    return page("signin.html", status, title="Sign in", error=error, current="")
