"""POST /jobs/{id}/retry (scope `admin`): a dead or cancelled job back to the queue with a
fresh budget of attempts, through jobfleet.retry (the Python API's call), so the CLI, the
API and the console cannot disagree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path
from psycopg import Connection
from pydantic import BaseModel

from jobfleet import client
from jobfleet.http.errors import responses
from jobfleet.http.schemas import Error
from jobfleet.options import ID_MAX

JobId = Annotated[int, Path(ge=1, le=ID_MAX)]


class RetryResult(BaseModel):
    id: int
    state: Literal["queued"]


def retry_route(app: FastAPI, access: Callable[[str], Any]) -> None:
    can_retry = access("admin")

    @app.post(
        "/jobs/{job_id}/retry",
        response_model=RetryResult,
        responses={
            **responses(401, 403, 404, 422, 429, 503),
            409: {"model": Error, "description": "The job is not dead or cancelled"},
        },
        summary="Retry a dead or cancelled job: queued again with a fresh budget of attempts",
    )
    def retry_job(job_id: JobId, conn: Connection[Any] = can_retry) -> RetryResult:
        return RetryResult.model_validate({"id": job_id, "state": client.retry(job_id, conn=conn)})
