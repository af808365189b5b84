"""Who is looking: the session cookie, checked against the API key it was opened with on
every request (a revoked key's session ends there), and the CSRF token every form carries."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import RedirectResponse

from jobfleet import apikeys
from jobfleet.http.console import views
from jobfleet.http.console.render import PREFIX
from jobfleet.http.console.sessions import Session, Sessions, same_token
from jobfleet.queries import sql

COOKIE = "jobfleet_console"
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
    session_id: str
    session: Session
    name: str
    scopes: frozenset[str]

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
    def __init__(self, sessions: Sessions, connect: Callable[[], AbstractContextManager[Any]]):
        self.sessions, self.connect = sessions, connect

    def viewer(self, request: Request) -> Viewer | None:
        """The signed-in viewer, or None. One primary-key read of the key's row."""
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id)
        if session is None or session_id is None:
            return None
        with self.connect() as conn:
            row = conn.execute(sql("api_key_by_id"), {"key_id": session.key_id}).fetchone()
        if row is None or row[5] or "read" not in row[3]:  # gone, revoked, or no longer reads
            self.sessions.end(session_id)
            return None
        return Viewer(session_id, session, row[0], frozenset(row[3]))

    def require_viewer(self, request: Request) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            raise SignInNeeded
        return viewer

    def sign_in(self, presented: str) -> tuple[str, Session] | str:
        """A new session for a good key with the read scope, or why there is none."""
        if not apikeys.well_formed(presented):
            return "that is not an API key (they look like jf_…, from `jobfleet apikey create`)"
        with self.connect() as conn:
            key = apikeys.verify_key(conn, presented)
        if key is None:
            return "the API key is unknown, revoked or wrong"
        if "read" not in key.scopes:
            return f"API key {key.name!r} lacks the 'read' scope the console needs"
        key_id = presented.split("_")[1]
        return self.sessions.create(key_id, key.name)


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
    if not same_token(fields.get("csrf"), viewer.session.csrf):
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
