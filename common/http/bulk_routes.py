"""The HTTP API's bulk maintenance by filter (jobfleet.bulk): cancel the queued jobs of a type
or queue (scope `cancel`), queue the dead jobs of a type again (scope `admin`). Each runs in
bounded batches, each its own short transaction, and answers how many jobs it changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from jobfleet import bulk
from jobfleet.db import Connection
from jobfleet.http.errors import responses
from jobfleet.http.schemas import Changed, DeadFilter, JobFilter
from jobfleet.settings import Settings


def bulk_routes(app: FastAPI, access: Callable[[str], Any], config: Settings) -> None:
    can_cancel, can_steer = access("cancel"), access("admin")
    batches = bulk.Batches(config=config)

    @app.post(
        "/jobs:cancel",
        response_model=Changed,
        responses=responses(400, 401, 403, 413, 422, 429, 503),
        summary="Cancel every queued job (scheduled ones too) of a type and/or queue; running "
        "jobs are left alone",
    )
    def cancel_matching(where: JobFilter, conn: Connection = can_cancel) -> Changed:
        conn.commit()  # the key's check; then each batch commits on its own
        changed = bulk.cancel_queued(conn, bulk.JobFilter(where.type, where.queue), batches)
        return Changed(changed=changed)

    @app.post(
        "/dlq:retry",
        response_model=Changed,
        responses=responses(400, 401, 403, 413, 422, 429, 503),
        summary="Queue every dead job of a type again, with a fresh budget of attempts",
    )
    def retry_matching(where: DeadFilter, conn: Connection = can_steer) -> Changed:
        conn.commit()
        return Changed(changed=bulk.retry_dead(conn, bulk.JobFilter(type=where.type), batches))
