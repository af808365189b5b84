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
