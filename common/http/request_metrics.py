"""Prometheus metrics of the HTTP API's requests, with labels from fixed sets only."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobfleet import metrics

# Methods counted by name in the request metrics; any other a client makes up is `other`, so
# a caller cannot grow /metrics with labels of its own choosing.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestMetrics:
    """Counts and times every request by method, route template and status. Every label is
    from a fixed set: a known method or `other`, a route's template (never the raw path) or
    `unmatched`, and a status this API answers with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            m = metrics.metrics()
            m.http_requests.labels(method, template, str(status)).inc()
            m.http_duration.labels(method, template).observe(time.perf_counter() - start)
