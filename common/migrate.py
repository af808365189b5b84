"""Schema migrations: numbered files in sql/, applied once each, safe from many hosts at once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from jobfleet.db import Connection
from jobfleet.errors import SchemaOutOfDate
from jobfleet.queries import sql

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("jobfleet.sql").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    return available()[-1].version


def migrate(conn: Connection) -> list[Migration]:
    """Apply what is missing, each file in one transaction; return what was applied."""
    applied_now = []
    with conn.transaction():
        # The lock serialises concurrent migrators; the table's creation is inside it so two
        # hosts never race on CREATE TABLE IF NOT EXISTS either.
        conn.execute(sql("migrations_lock"))
        conn.execute(sql("create_migrations_table"))
        done = {row[0] for row in conn.execute(sql("applied_migrations"))}
        for migration in available():
            if migration.version in done:
                continue
            conn.execute(migration.text.encode())  # DDL from our own files, never user input
            conn.execute(
                sql("record_migration"), {"version": migration.version, "name": migration.name}
            )
            applied_now.append(migration)
    return applied_now


def schema_version(conn: Connection) -> int:
    exists = conn.execute(sql("migrations_table_exists")).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(sql("schema_version")).fetchone()
    return int(row[0]) if row else 0


def check_schema(conn: Connection) -> int:
    """The schema's version; SchemaOutOfDate unless every migration this jobfleet knows has
    been applied."""
    have, want = schema_version(conn), latest_version()
    if have < want:
        raise SchemaOutOfDate(
            f"the database schema is at version {have}, this jobfleet needs {want}: "
            "run `jobfleet migrate`"
        )
    return have
