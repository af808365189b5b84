"""Scratch databases on the server in use, and filling them with jobs fast.

Each scenario gets a fresh database (created, migrated, dropped afterwards) on the server the
rest of jobfleet uses: JOBFLEET_DATABASE_URL's, or the embedded cluster.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql as pgsql

from jobfleet.db import database_url, with_dbname
from jobfleet.migrate import migrate
from jobfleet.settings import Settings

PREFIX = "jobfleet_bench"
# COPY sends this many rows per write: big enough that Python's per-call cost vanishes.
COPY_CHUNK = 10_000
_serial = itertools.count(1)
# Every scratch database this process made, for the report (and the tests: all dropped).
created: list[str] = []


def server_url(config: Settings) -> str:
    """The URL of a database on the server to create scratch databases on."""
    return database_url(config, verify=not config.database_url)


@contextmanager
def scratch_database(server: str, label: str) -> Iterator[str]:
    """A fresh, migrated database; yields its URL and drops it afterwards, whatever happens."""
    name = f"{PREFIX}_{os.getpid()}_{next(_serial)}_{label}"[:63]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    created.append(name)
    url = with_dbname(server, name)
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


def server_facts(url: str) -> dict[str, Any]:
    """What the figures depend on: the server's version and durability settings."""
    with psycopg.connect(url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(pgsql.SQL("SHOW {}").format(pgsql.Identifier(name))).fetchone()
            return str(row[0]) if row else "?"

        return {
            "postgres_version": show("server_version"),
            "fsync": show("fsync"),
            "synchronous_commit": show("synchronous_commit"),
            "shared_buffers": show("shared_buffers"),
        }


def copy_rows(type: str, payload: str, count: int, run_at: datetime) -> Iterator[bytes]:
    """COPY text for `count` jobs, in chunks; every job shares one run_at so pickup is by id."""
    line = f"{type}\tdefault\t0\t{run_at.isoformat()}\t5\t{payload}\n".encode()
    full, rest = divmod(count, COPY_CHUNK)
    for _ in range(full):
        yield line * COPY_CHUNK
    if rest:
        yield line * rest


COPY_JOBS = "COPY jobs (type, queue, priority, run_at, max_attempts, payload) FROM STDIN"


def fill(
    url: str, count: int, *, type: str = "noop", payload: str = "null", analyse: bool = False
) -> None:
    """Queue `count` ready jobs with plain COPY, as a user's bulk enqueue does, and start the
    timed part right after, as the user's supervisors would: no ANALYZE, no CHECKPOINT.
    `analyse`: VACUUM ANALYZE first, as a queue that filled up over time would have been by
    autovacuum (the figure reported beside the fresh one)."""
    run_at = datetime.now(UTC) - timedelta(seconds=1)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(COPY_JOBS) as copy:
            for chunk in copy_rows(type, payload, count, run_at):
                copy.write(chunk)
        if analyse:
            conn.execute("VACUUM ANALYZE jobs")


def reset(url: str) -> None:
    """Empty the tables. Statistics of earlier rounds stay (TRUNCATE keeps them): a round that
    must start on a never-analysed table takes a scratch database of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_attempt_log, nodes RESTART IDENTITY CASCADE")


def scalar(url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return None if row is None else row[0]


def scalar_row(url: str, query: str, params: Any = None) -> tuple[Any, ...]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None, "the query returned no row"
        return tuple(row)
