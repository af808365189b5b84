"""The console's pages (GET): overview, jobs, a job, dead letters, queues, periodic jobs, and
the live stream each page listens to. Each page is one or two index-driven reads; counts come
from the live feed's shared, paced copy (live.LiveFeed.counts), never from a count per view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from jobfleet import admin, type_limits
from jobfleet.errors import JobNotFound
from jobfleet.http.console import views
from jobfleet.http.console.auth import NOTICE_COOKIE, Gate, Viewer, take_notice
from jobfleet.http.console.live import LiveFeed
from jobfleet.http.console.render import PREFIX, page
from jobfleet.jobs import iso
from jobfleet.options import ID_MAX, STATES, OptionError, check_name, check_state
from jobfleet.queries import sql

PAGE_SIZE = 50
JobId = Annotated[int, Path(ge=1, le=ID_MAX)]
Filter = Annotated[str | None, Query(max_length=128)]


def _common(viewer: Viewer, request: Request, current: str, title: str) -> dict[str, Any]:
    return {
        "viewer": viewer,
        "allowed": viewer.allowed,
        "csrf": viewer.csrf,
        "notice": take_notice(request),
        "current": current,
        "title": title,
        "states": STATES,
    }


def show(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The page, clearing the notice it shows (an action's outcome is shown once)."""
    response = page(template, status, **context)
    if context.get("notice") is not None:
        response.delete_cookie(NOTICE_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


def page_routes(app: FastAPI, gate: Gate, feed: LiveFeed) -> None:
    connect = feed.connect

    @app.get(PREFIX, include_in_schema=False)
    def overview(request: Request) -> HTMLResponse:
        viewer = gate.viewer(request)
        if viewer is None:
            return page("signin.html", title="Sign in", error=None, current="")
        counts = feed.counts()
        snap = feed.snapshot([])
        return show(
            "overview.html",
            counts=counts,
            throughput=feed.throughput(),
            nodes=snap["nodes"],
            **_common(viewer, request, "overview", "Overview"),
        )

    @app.get(f"{PREFIX}/jobs", include_in_schema=False)
    def jobs(
        request: Request,
        state: Filter = None,
        type: Filter = None,
        queue: Filter = None,
        node: Filter = None,
        before: Annotated[int | None, Query(ge=1, le=ID_MAX)] = None,
    ) -> HTMLResponse:
        viewer = gate.require_viewer(request)
        filters = {"state": state or None, "type": type or None, "queue": queue or None}
        filters["node"] = node or None
        context = _common(viewer, request, "jobs", "Jobs")
        try:
            _check_filters(filters)
        except OptionError as exc:
            return show(
                "jobs.html",
                422,
                error=str(exc),
                rows=[],
                filters=filters,
                more=None,
                first=True,
                cancel_matching=False,
                **context,
            )
        with connect() as conn:
            max_id = None
            if before is None:
                max_id = conn.execute(sql("console_max_id")).fetchone()[0]
            where = views.page_window(before, max_id)
            conn.execute(sql("index_plans"))  # for this transaction: plans without statistics
            cur = conn.execute(
                sql("console_jobs_page"),
                {**filters, "top": where.top, "floor": where.floor, "limit": PAGE_SIZE},
            )
            names = [c.name for c in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        more = views.next_before([r["id"] for r in rows], PAGE_SIZE, where)
        return show(
            "jobs.html",
            error=None,
            rows=rows,
            filters=filters,
            more=more,
            first=before is None,
            window=where,
            cancel_matching=views.cancels_matching(filters),
            **context,
        )

    @app.get(PREFIX + "/jobs/{job_id}", include_in_schema=False)
    def job(request: Request, job_id: JobId) -> HTMLResponse:
        viewer = gate.require_viewer(request)
        context = _common(viewer, request, "jobs", f"Job {job_id}")
        try:
            with connect() as conn:
                shown = admin.show_job(conn, job_id)
        except JobNotFound as exc:
            return show("missing.html", 404, message=str(exc), **context)
        return show("job.html", job=shown, rendered_at=iso(datetime.now(UTC)), **context)

    @app.get(f"{PREFIX}/dead", include_in_schema=False)
    def dead(request: Request) -> HTMLResponse:
        viewer = gate.require_viewer(request)
        with connect() as conn:
            rows = admin.dlq_list(conn, limit=PAGE_SIZE)
        total = feed.counts().states["dead"]
        return show(
            "dead.html", rows=rows, total=total, **_common(viewer, request, "dead", "Dead letters")
        )

    @app.get(f"{PREFIX}/queues", include_in_schema=False)
    def queues(request: Request) -> HTMLResponse:
        viewer = gate.require_viewer(request)
        counts = feed.counts()
        with connect() as conn:
            paused = set(admin.paused_queues(conn))
            limits = type_limits.list_types(conn)
        names = sorted(counts.queues.keys() | paused | {"default"})
        rows = [
            {
                "queue": q,
                "counts": counts.queues.get(q, dict.fromkeys(STATES, 0)),
                "paused": q in paused,
            }
            for q in names
        ]
        return show(
            "queues.html", rows=rows, limits=limits, **_common(viewer, request, "queues", "Queues")
        )

    @app.get(f"{PREFIX}/periodic", include_in_schema=False)
    def periodic(request: Request) -> HTMLResponse:
        viewer = gate.require_viewer(request)
        with connect() as conn:
            rows = admin.cron_list(conn)
        return show(
            "periodic.html", rows=rows, **_common(viewer, request, "periodic", "Periodic jobs")
        )

    @app.get(f"{PREFIX}/live", include_in_schema=False)
    async def live(
        request: Request, watch: Annotated[str | None, Query(max_length=4000)] = None
    ) -> StreamingResponse:
        await run_in_threadpool(gate.require_viewer, request)
        return StreamingResponse(
            feed.stream(views.parse_watch(watch)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _check_filters(filters: dict[str, str | None]) -> None:
    if filters["state"] is not None:
        check_state(filters["state"])
    for name in ("type", "queue", "node"):
        if filters[name] is not None:
            check_name(name, filters[name])
