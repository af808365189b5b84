"""Who is looking: the session cookie (a signed token, sessions.py), checked against the API
key's row on every request (a revoked key's session ends there), and the CSRF token every
form carries."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from jobfleet import apikeys
from jobfleet.http.console import sessions, views
from jobfleet.http.console.render import PREFIX
from jobfleet.queries import sql

COOKIE = "jobfleet_console"
NOTICE_COOKIE = "jobfleet_notice"  # an action's outcome, shown once by the next page
FORM_MAX_FIELD = 4096


class SignInNeeded(Exception):
    """No session, an expired one, or one whose key was revoked: back to the sign-in form."""


class Refused(Exception):
    """A request the console will not serve: a missing scope, a wrong CSRF token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Viewer:
    name: str
    scopes: frozenset[str]
    csrf: str

    @property
    def allowed(self) -> views.Allowed:
        return views.allowed(self.scopes)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Refused(
                403,
                f"API key {self.name!r} lacks the {scope!r} scope "
                f"(it has: {', '.join(sorted(self.scopes))})",
            )


class Gate:
    def __init__(self, connect: Callable[[], AbstractContextManager[Any]]) -> None:
        self.connect = connect

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in viewer, or None. One primary-key read of the key's row (none for a
        cookie that is not a session token)."""
        claim = sessions.parse(request.cookies.get(COOKIE))
        if claim is None:
            return None
        with self.connect() as conn:
            row = conn.execute(sql("api_key_by_id"), {"key_id": claim.key_id}).fetchone()
        if row is None:
            return None
        name, _, secret, scopes, _, revoked = row
        if revoked or "read" not in scopes or not sessions.valid(claim, bytes(secret), time.time()):
            return None
        return Viewer(name, frozenset(scopes), sessions.csrf_token(claim, bytes(secret)))

    def require_viewer(self, request: Request) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            raise SignInNeeded
        return viewer

    def sign_in(self, presented: str) -> tuple[str, str] | str:
        """A session token and the key's name for a good key with the read scope, or why
        there is none."""
        if not apikeys.well_formed(presented):
            return "that is not an API key (they look like jf_…, from `jobfleet apikey create`)"
        key_id = presented.split("_")[1]
        with self.connect() as conn:
            key = apikeys.verify_key(conn, presented)
            row = conn.execute(sql("api_key_by_id"), {"key_id": key_id}).fetchone()
        if key is None or row is None:
            return "the API key is unknown, revoked or wrong"
        if "read" not in key.scopes:
            return f"API key {key.name!r} lacks the 'read' scope the console needs"
        return sessions.issue(key_id, bytes(row[2]), time.time()), key.name


def set_notice(response: Response, notice: str) -> None:
    response.set_cookie(
        NOTICE_COOKIE, quote(notice[:500]), httponly=True, samesite="strict", path=PREFIX
    )


def take_notice(request: Request) -> str | None:
    """The notice the last action left, if any (the page that shows it clears it)."""
    raw = request.cookies.get(NOTICE_COOKIE)
    return None if raw is None else unquote(raw)


def form_fields(body: bytes) -> dict[str, str]:
    """A url-encoded form's fields (the first value of each), each at most FORM_MAX_FIELD."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None
    fields = {name: values[0] for name, values in parse_qs(text, max_num_fields=20).items()}
    for name, value in fields.items():
        if len(value) > FORM_MAX_FIELD or "\x00" in value:
            raise Refused(422, f"form field {name!r} is too long or holds a NUL character")
    return fields


def check_csrf(viewer: Viewer, fields: dict[str, str]) -> None:
    if not sessions.same_token(fields.get("csrf"), viewer.csrf):
        raise Refused(403, "the form's CSRF token is missing or wrong: reload the page and retry")


def same_origin(request: Request) -> bool:
    """A browser's form post names its origin: it must be this server (a sign-in posted from
    another site is refused). A client that sends no Origin (curl) is let through."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def to_page(path: str) -> RedirectResponse:
    """After a form: see the page again (303, so a reload does not post twice)."""
    return RedirectResponse(f"{PREFIX}{path}", status_code=303)
