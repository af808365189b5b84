"""The HTTP API's flow control: counts per queue and state, pausing or resuming a queue for
every node (scope `admin`), and the job types with their limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path
from psycopg import Connection

from jobfleet import admin, type_limits
from jobfleet.http.errors import ApiError, responses
from jobfleet.http.schemas import JobTypes, Queues, QueueState
from jobfleet.options import OptionError

QueueName = Annotated[str, Path(min_length=1, max_length=128)]


def queue_routes(app: FastAPI, access: Callable[[str], Any]) -> None:
    can_read, can_steer = access("read"), access("admin")

    @app.get(
        "/queues",
        response_model=Queues,
        responses=responses(401, 403, 429, 503),
        summary="Job counts per queue and state, and which queues are paused",
    )
    def queues(conn: Connection[Any] = can_read) -> Queues:
        return Queues.model_validate({"queues": admin.queues(conn)})

    def steer(name: str, paused: bool, conn: Connection[Any]) -> QueueState:
        try:
            now_paused = admin.set_paused(conn, name, paused)
        except OptionError as exc:
            raise ApiError(422, "invalid", str(exc), field="path.name") from None
        return QueueState(queue=name, paused=now_paused)

    @app.post(
        "/queues/{name}/pause",
        response_model=QueueState,
        responses=responses(401, 403, 422, 429, 503),
        summary="Pause a queue: within a second no node claims from it; running jobs finish",
    )
    def pause(name: QueueName, conn: Connection[Any] = can_steer) -> QueueState:
        return steer(name, True, conn)

    @app.post(
        "/queues/{name}/resume",
        response_model=QueueState,
        responses=responses(401, 403, 422, 429, 503),
        summary="Resume a paused queue",
    )
    def resume(name: QueueName, conn: Connection[Any] = can_steer) -> QueueState:
        return steer(name, False, conn)

    @app.get(
        "/types",
        response_model=JobTypes,
        responses=responses(401, 403, 429, 503),
        summary="Job types: their defaults, limits (max_running, rate, limit_key) and running jobs",
    )
    def types(conn: Connection[Any] = can_read) -> JobTypes:
        return JobTypes.model_validate({"types": type_limits.list_types(conn)})
