"""HTML out: Jinja2 templates (autoescaped) and the console's two static files, all inside the
package, with headers that keep every page on this server: its Content-Security-Policy
allows no script, style, image or connection from another host, nor any inline script."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

PREFIX = "/ui"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobfleet.http.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    env.filters["last_line"] = _last_line
    env.filters["percent"] = lambda fraction: f"{100 * float(fraction or 0):.0f} %"
    return env


def _last_line(text: str | None) -> str:
    """An error's last line: a traceback's exception and message (the page of the job shows
    the whole traceback)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(prefix=PREFIX, **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@lru_cache(maxsize=len(STATIC))
def asset(name: str) -> bytes:
    return resources.files("jobfleet.http.console").joinpath("static", name).read_bytes()


def _serve(name: str, content_type: str) -> Any:
    def serve() -> Response:
        return Response(
            asset(name),
            media_type=content_type,
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    return serve


def static_routes(app: FastAPI) -> None:
    for name, content_type in STATIC.items():
        app.add_api_route(
            f"{PREFIX}/static/{name}",
            _serve(name, content_type),
            methods=["GET"],
            include_in_schema=False,
        )
