"""Migrations: applied once, recorded, safe when many hosts run them at once."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from jobfleet.errors import SchemaOutOfDate
from jobfleet.migrate import available, check_schema, latest_version, migrate, schema_version
from tests.conftest import JOBFLEET, Cli, scalar


def test_migrate_twice_applies_once(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        assert schema_version(conn) == 0
        with pytest.raises(SchemaOutOfDate, match="run `jobfleet migrate`"):
            check_schema(conn)
        first = migrate(conn)
        second = migrate(conn)
        assert [m.version for m in first] == [m.version for m in available()]
        assert second == []
        assert schema_version(conn) == latest_version()
        check_schema(conn)
        assert scalar(conn, "SELECT count(*) FROM jobfleet_migrations") == len(available())


def test_ten_hosts_migrating_at_once(fresh_db: str) -> None:
    env = {**os.environ, "JOBFLEET_DATABASE_URL": fresh_db}
    procs = [
        subprocess.Popen(
            [JOBFLEET, "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(code == 0 for code, _, _ in results), results
    applied = sum(out.count("applied ") for _, out, _ in results)
    assert applied == len(available())
    with psycopg.connect(fresh_db) as conn:
        assert scalar(conn, "SELECT count(*) FROM jobfleet_migrations") == len(available())


def test_supervisor_refuses_an_unmigrated_database(fresh_db: str) -> None:
    result = Cli(fresh_db)("supervisor", "--burst")
    assert result.returncode == 3
    assert "run `jobfleet migrate`" in result.stderr


def test_commands_on_an_unmigrated_database_say_to_migrate(fresh_db: str) -> None:
    result = Cli(fresh_db)("enqueue", "echo")
    assert result.returncode == 3
    assert "jobfleet migrate" in result.stderr
    assert result.stderr.count("\n") == 1


SCHEMA_FINGERPRINT = [
    "SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position"
    " FROM information_schema.columns WHERE table_schema = 'public'"
    " AND table_name <> 'jobfleet_migrations' ORDER BY 1, 6",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE connamespace = 'public'::regnamespace"
    " AND conrelid::regclass::text <> 'jobfleet_migrations' ORDER BY 1, 2",
    "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'"
    " AND tablename <> 'jobfleet_migrations' ORDER BY 1",
    "SELECT viewname, pg_get_viewdef(viewname::regclass) FROM pg_views"
    " WHERE schemaname = 'public' ORDER BY 1",
    "SELECT proname, pg_get_functiondef(oid) FROM pg_proc"
    " WHERE pronamespace = 'public'::regnamespace ORDER BY 1",
    "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    " AND relkind = 'r' AND relname <> 'jobfleet_migrations' ORDER BY 1",
]


def _fingerprint(url: str) -> list[list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return [[tuple(r) for r in conn.execute(q).fetchall()] for q in SCHEMA_FINGERPRINT]


def test_the_readable_schema_is_what_the_migrations_build(
    fresh_db: str, admin_url: str, worker_id: str
) -> None:
    """sql/schema.sql is for people to read; it must never drift from the migrations."""
    from importlib import resources

    from jobfleet.db import with_dbname
    from tests.conftest import _recreate

    with psycopg.connect(fresh_db) as conn:
        migrate(conn)
    name = f"jobfleet_schema_{worker_id}"
    _recreate(admin_url, name)
    from_schema = with_dbname(admin_url, name)
    text = resources.files("jobfleet.sql").joinpath("schema.sql").read_text(encoding="utf-8")
    with psycopg.connect(from_schema) as conn:
        conn.execute(text)  # type: ignore[call-overload]
    migrated = _fingerprint(fresh_db)
    assert all(migrated), "the fingerprint found nothing: its queries are wrong"
    assert _fingerprint(from_schema) == migrated
