"""The web console at /ui: server-rendered pages over the HTTP API's pool, a session per
signed-in API key, one live feed per process (README, "Web console")."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from jobfleet.http.console.actions import action_routes
from jobfleet.http.console.auth import Gate, Refused, SignInNeeded
from jobfleet.http.console.live import LiveFeed
from jobfleet.http.console.pages import page_routes
from jobfleet.http.console.render import PREFIX, page, static_routes
from jobfleet.settings import Settings


def install(
    app: FastAPI,
    connect: Callable[[], AbstractContextManager[Any]],
    config: Settings | None = None,
) -> None:
    """Serve the console from `app`, reading through `connect` (a pooled connection in a
    bounded transaction, as the API's requests use); bulk actions' batches take `config`'s
    timeouts."""
    gate = Gate(connect)
    feed = LiveFeed(connect)
    static_routes(app)
    page_routes(app, gate, feed)
    action_routes(app, gate, config)

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, exc: SignInNeeded) -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        return page(
            "refused.html", exc.status, title="Not allowed", message=exc.message, current=""
        )
