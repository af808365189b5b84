"""Fixtures: a real PostgreSQL (this user's embedded one, or JOBFLEET_DATABASE_URL), one
database per xdist worker, clean tables per test, and helpers to run the real `jobfleet`
command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobfleet import polling
from jobfleet import settings as settings_module
from jobfleet.db import database_url, with_dbname
from jobfleet.http.app import create_app
from jobfleet.migrate import migrate
from jobfleet.node_process import NodeProcess
from jobfleet.settings import load_settings
from tests.http_support import bearer, make_key

ROOT = Path(__file__).resolve().parent.parent
JOBFLEET = str(Path(sys.executable).parent / "jobfleet")
TABLES = (
    "jobs, job_attempt_log, nodes, job_types, api_keys, queues, schedules, unique_jobs, "
    "type_limits, type_finished, key_limits, key_finished"
)
# The tests use the user's own embedded cluster (or JOBFLEET_DATABASE_URL), which other
# checkouts on the machine use too: their databases carry a hash of this checkout's path, so
# two checkouts testing at once never share one.
CHECKOUT = hashlib.sha1(str(ROOT).encode()).hexdigest()[:8]


def _admin_url() -> str:
    settings_module.settings.cache_clear()
    if os.environ.get("JOBFLEET_DATABASE_URL"):
        return os.environ["JOBFLEET_DATABASE_URL"]
    return database_url(verify=True)


def _recreate(admin: str, name: str) -> None:
    _drop(admin, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def admin_url() -> str:
    return _admin_url()


@pytest.fixture(scope="session")
def db_url(admin_url: str, worker_id: str) -> Iterator[str]:
    """This xdist worker's own database, migrated, and set as JOBFLEET_DATABASE_URL."""
    name = f"jobfleet_test_{CHECKOUT}_{worker_id}"
    _recreate(admin_url, name)
    url = with_dbname(admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER DATABASE " + name + " SET synchronous_commit = off")
    os.environ["JOBFLEET_DATABASE_URL"] = url
    settings_module.settings.cache_clear()
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    _drop(admin_url, name)  # the cluster outlives the tests: leave nothing in it


@pytest.fixture
def fresh_db(admin_url: str, worker_id: str) -> Iterator[str]:
    """An empty database with no schema, for migration tests."""
    name = f"jobfleet_fresh_{CHECKOUT}_{worker_id}"
    _recreate(admin_url, name)
    yield with_dbname(admin_url, name)
    _drop(admin_url, name)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a database with empty tables."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        yield c


class Cli:
    """Runs the installed `jobfleet` console script as a user would."""

    def __init__(self, url: str) -> None:
        self.env = {**os.environ, "JOBFLEET_DATABASE_URL": url}

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [JOBFLEET, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            cwd=ROOT,
        )

    def ok(self, *args: str, **kwargs: Any) -> str:
        result = self(*args, **kwargs)
        assert result.returncode == 0, f"jobfleet {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [JOBFLEET, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )


@pytest.fixture
def cli(conn: psycopg.Connection[Any], db_url: str) -> Cli:
    return Cli(db_url)


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (every 10 ms, backing off to 0.2 s);
    the test fails after `timeout` seconds."""
    return polling.wait_until(check, timeout, what, max_pause=0.2, error=AssertionError)


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory other users can enter (pytest's tmp_path is private to its user,
    and the embedded server runs as an unprivileged user when the tests run as root)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="jf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fleet(db_url: str, conn: psycopg.Connection[Any], tmp_path: Path) -> Iterator[Any]:
    """Start supervisors: fleet(name, *args, env={...}) -> NodeProcess. All are killed at the
    end."""
    started: list[NodeProcess] = []

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        node = NodeProcess(
            name,
            *args,
            log_path=tmp_path / f"{name}.log",
            env={**os.environ, "JOBFLEET_DATABASE_URL": db_url, **(env or {})},
            cwd=ROOT,
        )
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()


def job_states(conn: psycopg.Connection[Any]) -> dict[int, str]:
    return dict(conn.execute("SELECT id, state FROM jobs").fetchall())


def all_finished(conn: psycopg.Connection[Any]) -> bool:
    return scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == 0


# -- the HTTP API in process (FastAPI's test client) ------------------------------------------


@pytest.fixture
def client(conn: psycopg.Connection[Any], db_url: str) -> Iterator[TestClient]:
    """The API with a small body limit, on this worker's database with empty tables."""
    with TestClient(create_app(db_url, load_settings(max_request_bytes=64 * 1024))) as c:
        yield c


@pytest.fixture
def key(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Headers with a key of every scope but admin."""
    return bearer(make_key(conn, "all", "enqueue,read,cancel"))
