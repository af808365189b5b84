"""The HTTP API's health routes: liveness, readiness (the database answers and its schema is
current) and the node's Prometheus metrics. None needs a key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Response

from jobfleet import metrics
from jobfleet.http.errors import responses
from jobfleet.http.schemas import Health, Ready
from jobfleet.migrate import check_schema


def health_routes(app: FastAPI, connection: Callable[..., Any], *, ready_wait: float) -> None:
    @app.get("/healthz", response_model=Health, summary="The process is up")
    def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Ready,
        responses=responses(503),
        summary="The database answers and its schema is current",
    )
    def readyz() -> Ready:
        with connection(wait=ready_wait) as conn:
            version = check_schema(conn)
        return Ready(status="ready", schema_version=version)

    @app.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics of every process on this node",
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)
