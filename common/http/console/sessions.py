"""The console's sign-in sessions, kept in the HTTP process's memory.

The browser holds only a random session id (256 bits) in an HttpOnly, SameSite=Strict cookie;
the server keeps, per id, the API key's id (never the key itself), the key's name, a CSRF
token and a one-shot notice. Every request looks the key id up again (jobfleet.apikeys), so a
revoked key's session stops working at its next request. The HTTP API runs one process per
node, so one table per process is every session that node has; a restarted HTTP child asks
its users to sign in again, which costs them one form.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# A session lasts a working day without use, then the key must be given again.
IDLE_SECONDS = 12 * 3600.0
# The table's bound: past it the least recently used session goes (a flood of sign-ins with
# a valid key cannot grow memory without end).
MAX_SESSIONS = 10_000
ID_BYTES = 32


@dataclass
class Session:
    key_id: str  # the API key's public id (jf_<key_id>_...), looked up on every request
    key_name: str
    csrf: str
    seen: float
    notice: str | None = None

    def take_notice(self) -> str | None:
        notice, self.notice = self.notice, None
        return notice


class Sessions:
    def __init__(
        self,
        *,
        idle_seconds: float = IDLE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds, self.max_sessions, self.clock = idle_seconds, max_sessions, clock
        self._table: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, key_id: str, key_name: str) -> tuple[str, Session]:
        """A new session for a verified key: its id (for the cookie) and the session."""
        session_id = secrets.token_urlsafe(ID_BYTES)
        session = Session(key_id, key_name, secrets.token_urlsafe(ID_BYTES), self.clock())
        with self._lock:
            self._table[session_id] = session
            while len(self._table) > self.max_sessions:
                self._table.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle time starts again), or None."""
        if not session_id:
            return None
        with self._lock:
            session = self._table.get(session_id)
            if session is None:
                return None
            now = self.clock()
            if now - session.seen > self.idle_seconds:
                del self._table[session_id]
                return None
            session.seen = now
            self._table.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._table.pop(session_id or "", None)

    def __len__(self) -> int:
        return len(self._table)


def same_token(presented: str | None, expected: str) -> bool:
    """Whether a form's CSRF token is the session's (in constant time)."""
    return presented is not None and secrets.compare_digest(presented.encode(), expected.encode())
