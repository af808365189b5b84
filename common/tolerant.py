"""Reading rows whatever they hold: a value Python cannot represent (a timestamp past year
9999 or before year 1, 'infinity'; JSON nested deeper than the decoder goes, or an integer
with more digits than int() takes) must not make `jobs list`, `jobs show` or GET /jobs fail
for everyone. Such a row may have been written by hand, or before jobfleet refused it.

Connections that read jobs for people (the CLI, the Python API, the HTTP API) load those
values tolerantly: a timestamp Python cannot hold comes back as PostgreSQL's own text, JSON
that cannot be decoded as a note saying so."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.types.datetime import TimestamptzLoader
from psycopg.types.json import set_json_loads

UNREADABLE_JSON = "<JSON that cannot be read here: {reason}>"


class _TimestamptzOrText(TimestamptzLoader):
    def load(self, data: Any) -> Any:
        try:
            return super().load(data)
        except psycopg.DataError:  # past what datetime holds: show it as PostgreSQL does
            return bytes(data).decode("utf-8", errors="replace")


def _json_or_note(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (RecursionError, ValueError) as exc:
        return UNREADABLE_JSON.format(reason=type(exc).__name__)


def tolerate(conn: psycopg.Connection[Any]) -> None:
    """Load this connection's timestamps and JSON tolerantly (see the module's docstring)."""
    _register(conn)


def tolerate_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """`tolerate` for an asyncio connection."""
    _register(conn)


def _register(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("timestamptz", _TimestamptzOrText)
    set_json_loads(_json_or_note, conn)
