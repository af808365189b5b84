"""Every error the HTTP API returns: one JSON body shape, a status that says who is at fault,
and the OpenAPI entries that publish them. A user's mistake never becomes a 500."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobfleet.errors import DatabaseUnavailable, JobfleetError, JobNotFound, SchemaOutOfDate
from jobfleet.http.schemas import Error
from jobfleet.log import get_logger
from jobfleet.options import OptionError

log = get_logger("jobfleet.http")

DESCRIPTIONS = {
    400: "The request is malformed (not JSON, wrong content type)",
    401: "No API key, or a key that is unknown, revoked or wrong",
    403: "The key lacks the scope this endpoint needs",
    404: "No such job (or no such route)",
    409: "The job is already finished and cannot be cancelled",
    413: "The request body is over the size limit",
    422: "A field is invalid; `field` names it",
    429: "Over the key's rate limit, or too many requests without a valid key from this "
    "address; retry after `Retry-After` seconds",
    500: "An unexpected error on our side (logged; never a user mistake)",
    503: "The database is not answering, or its schema is out of date",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, each with the Error body."""
    return {s: {"model": Error, "description": DESCRIPTIONS[s]} for s in (*statuses, 500)}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.retry_after = field, retry_after


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    # HTTP's Retry-After is whole seconds, never 0; the body says the same, not a different
    # figure a client would have to choose between.
    wait = None if retry_after is None else max(1, math.ceil(retry_after))
    body = Error.model_validate(
        {"error": code, "message": message, "field": field, "errors": errors, "retry_after": wait}
    ).model_dump(exclude_none=True)
    headers = {} if wait is None else {"Retry-After": str(wait)}
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _body_too_large(exc: BaseException) -> bool:
    """FastAPI turns an exception raised while reading the body into a 400; the size limit's
    is one of them (see limits.py)."""
    from jobfleet.http.limits import BodyTooLarge

    cause = exc.__cause__
    return isinstance(cause, BodyTooLarge)


def install(app: FastAPI) -> None:
    """Every error handler on the app: what each exception is answered with."""
    for exc_type, handler in _handlers().items():
        app.add_exception_handler(exc_type, handler)


async def error_answer(request: Request, exc: Exception) -> Response:
    """What the app answers for `exc` raised while serving `request`: the handler of the most
    specific class of it that has one, as Starlette picks (for code that answers in front of
    FastAPI, jobfleet.http.fast_enqueue)."""
    handlers = _handlers()
    handler = next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)
    return await handler(request, exc)


Handler = Callable[[Request, Any], Awaitable[Response]]


@cache
def _handlers() -> dict[type[Exception], Handler]:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.code, exc.message, field=exc.field, retry_after=exc.retry_after
        )

    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for problem in exc.errors():
            loc = tuple(problem.get("loc", ()))
            if problem.get("type") == "json_invalid":
                return error_response(
                    400, "bad_request", f"the body is not valid JSON: {problem.get('msg')}"
                )
            errors.append({"field": _location(loc), "message": str(problem.get("msg"))})
        content_type = request.headers.get("content-type", "")
        if loc == ("body",) and "json" not in content_type:
            # The body was not read as JSON at all (curl -d sends a form's content type).
            return error_response(
                422,
                "invalid",
                f"the body must be JSON sent with `Content-Type: application/json` (this "
                f"request says {content_type or 'nothing'!r})",
                field="body",
                errors=errors,
            )
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return error_response(
            422,
            "invalid",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if _body_too_large(exc):
            return error_response(
                413,
                "too_large",
                "the request body is over the size limit; send fewer or smaller jobs per "
                "request (JOBFLEET_MAX_REQUEST_BYTES sets the limit)",
            )
        if exc.status_code == 404:
            return error_response(
                404, "not_found", f"no route {request.method} {request.url.path} (see /docs)"
            )
        if exc.status_code == 405:
            return error_response(
                405, "method_not_allowed", f"{request.method} is not allowed on this route"
            )
        return error_response(exc.status_code, "http_error", str(exc.detail))

    async def bad_option(request: Request, exc: OptionError) -> JSONResponse:
        field = f"body.{exc.option}"
        return error_response(
            422, "invalid", str(exc), field=field, errors=[{"field": field, "message": str(exc)}]
        )

    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return error_response(422, "invalid", str(exc), field="body")

    async def not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)})
        return error_response(
            503,
            "database_unavailable",
            "the database is not answering; nothing was changed. Retry shortly.",
            retry_after=2,
        )

    async def schema(request: Request, exc: SchemaOutOfDate) -> JSONResponse:
        return error_response(503, "schema_out_of_date", str(exc), retry_after=5)

    async def conflict(request: Request, exc: JobfleetError) -> JSONResponse:
        return error_response(409, "conflict", str(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"path": request.url.path})
        return error_response(
            500, "internal", "an unexpected error occurred on the server; it has been logged"
        )

    return {
        ApiError: api_error,
        RequestValidationError: invalid,
        StarletteHTTPException: http_error,
        OptionError: bad_option,
        ValueError: bad_value,
        JobNotFound: not_found,
        psycopg_pool.PoolTimeout: database_down,
        psycopg.OperationalError: database_down,
        DatabaseUnavailable: database_down,
        SchemaOutOfDate: schema,
        JobfleetError: conflict,
        Exception: unexpected,
    }
