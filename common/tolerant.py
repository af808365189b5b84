"""Reading rows whatever they hold: a value Python cannot represent (a timestamp past year
9999 or before year 1, 'infinity'; JSON nested deeper than the decoder goes, or an integer
with more digits than int() takes) must not make `jobs list`, `jobs show` or GET /jobs fail
for everyone. Such a row may have been written by hand, or before jobfleet refused it.

Connections that read jobs for people (the CLI, the Python API, the HTTP API) load those
values tolerantly: a timestamp Python cannot hold comes back as PostgreSQL's own text, JSON
that cannot be decoded as a note saying so. So do the caller's connections those calls are
given (`conn=`), on cursors of their own (OwnLoaders)."""

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


def _register(
    conn: psycopg.Connection[Any]
    | psycopg.AsyncConnection[Any]
    | psycopg.Cursor[Any]
    | psycopg.AsyncCursor[Any],
) -> None:
    conn.adapters.register_loader("timestamptz", _TimestamptzOrText)
    set_json_loads(_json_or_note, conn)


class OwnLoaders:
    """A caller's connection (`conn=`), read with jobfleet's loaders. Frameworks register
    their own on the connections they hand out: Django loads jsonb as text (for its
    JSONField) and, with USE_TZ off, timestamps without their offset. Each statement runs on a
    new cursor of the caller's connection, in its transaction, with the loaders set on that
    cursor alone: what jobfleet returns has one shape whatever the connection, and the
    caller's connection is left as it was. Nothing is prepared on it (`prepare=False`, as in
    jobfleet.enqueue): behind a transaction-mode pooler a prepared statement does not follow
    the client to its next server connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        cur = self.conn.cursor()
        _register(cur)
        return cur.execute(query, params, prepare=False)


class AsyncOwnLoaders:
    """`OwnLoaders` for an asyncio connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, query: Any, params: Any = None) -> psycopg.AsyncCursor[Any]:
        cur = self.conn.cursor()
        _register(cur)
        return await cur.execute(query, params, prepare=False)
