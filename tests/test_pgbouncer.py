"""Through a real PgBouncer (Debian's package) in transaction pooling, with its stock settings
but two server connections per pool: the Python API enqueues on a caller's connection as the
caller configured it, and `jobfleet api` serves with its statement timeout still holding.

Without pgbouncer installed the module installs it when running as root (as CI does), and
fails saying so otherwise: a skipped test proves nothing. PgBouncer refuses to run as root, so
under root it runs as the embedded cluster's service user, whom the cluster's peer
authentication already admits (jobfleet.embedded_auth)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import jobfleet
import jobfleet.aio
from jobfleet import settings as settings_module
from jobfleet.http.server import free_port
from jobfleet.service_user import SERVICE_USER, as_user, ensure_service_user
from tests.conftest import JOBFLEET, scalar, wait_until
from tests.http_support import make_key
from tests.test_http_fleet import call

INSTALL_LOCK = Path(tempfile.gettempdir()) / "jobfleet-pgbouncer-install.lock"
POOL_SIZE = 2  # server connections per pool: a client's transactions hop between them
ROUNDS = 24  # past psycopg's prepare_threshold of 5, several times over


def pgbouncer_program() -> str:
    """The pgbouncer binary, installed from Debian's package first if missing (as root)."""
    found = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            "pgbouncer is not installed and this test runs as an unprivileged user, so it "
            "cannot install it: run `apt-get install pgbouncer` (Debian's package), or run "
            "the tests as root (they install it then)",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Two xdist workers may both find it missing: one installs, the other waits on the lock.
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shutil.which("pgbouncer", path="/usr/sbin:/usr/bin"):
            install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbouncer"]
            done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:  # a fresh machine's package lists may be empty or stale
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
                done = subprocess.run(install, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"apt-get install pgbouncer failed:\n{done.stderr}"
    found = shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    assert found, "apt-get installed pgbouncer but no pgbouncer program is on the PATH"
    return found


@dataclass
class Bouncer:
    url: str  # the test database, through PgBouncer
    log: Path


def _ini(db_url: str, port: int, home: Path) -> str:
    """PgBouncer's settings: the stock ones but the listener, the pool mode and size, and
    trust for the one user over 127.0.0.1 (a test's private instance)."""
    target = conninfo_to_dict(db_url)
    server = " ".join(
        f"{key}={target[key]}"
        for key in ("host", "port", "dbname", "user", "password")
        if target.get(key)
    )
    return f"""\
[databases]
{target["dbname"]} = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {home}
auth_type = trust
auth_file = {home}/userlist.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
"""


@pytest.fixture(scope="module")
def bouncer(db_url: str) -> Iterator[Bouncer]:
    program = pgbouncer_program()
    target = conninfo_to_dict(db_url)
    user = str(target.get("user") or os.environ.get("USER", "postgres"))
    home = Path(tempfile.mkdtemp(prefix="jobfleet-pgbouncer-"))
    port = free_port()
    (home / "pgbouncer.ini").write_text(_ini(db_url, port, home))
    (home / "userlist.txt").write_text(f'"{user}" ""\n')
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # pgbouncer will not run as root
        ensure_service_user()
        run_as = as_user(SERVICE_USER)
        for path in (home, *home.iterdir()):
            os.chown(path, run_as["user"], run_as["group"])
    log = home / "pgbouncer.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [program, str(home / "pgbouncer.ini")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            **run_as,
        )
    url = f"postgresql://{user}@127.0.0.1:{port}/{target['dbname']}"

    def answers() -> bool:
        assert process.poll() is None, f"pgbouncer exited:\n{log.read_text()}"
        try:
            with psycopg.connect(url, connect_timeout=2) as c:
                return scalar(c, "SELECT 1") == 1
        except psycopg.OperationalError:
            return False

    try:
        wait_until(answers, 30, "pgbouncer to answer")
        yield Bouncer(url, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


def _job_count(conn: psycopg.Connection[Any], ids: list[int]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM jobs WHERE id = ANY(%s)", (ids,)))


@pytest.mark.parametrize("prepare_threshold", [5, 0], ids=["default-threshold", "prepare-all"])
def test_enqueue_on_a_callers_connection_through_transaction_pooling(
    bouncer: Bouncer, conn: psycopg.Connection[Any], prepare_threshold: int
) -> None:
    """Two clients take turns holding a transaction open, so each one's transactions run on
    both server connections: a statement prepared on one would be missing on the other, or
    clash with the other client's `_pg3_0` there (DuplicatePreparedStatement)."""
    ids = []
    with (
        psycopg.connect(bouncer.url, prepare_threshold=prepare_threshold) as app,
        psycopg.connect(bouncer.url, prepare_threshold=prepare_threshold) as other,
    ):
        for n in range(ROUNDS):
            first, second = (app, other) if n % 2 else (other, app)
            with first.transaction():
                ids.append(jobfleet.enqueue(first, "echo", {"n": n, "client": "first"}))
                with second.transaction():  # on the other server connection meanwhile
                    ids.append(jobfleet.enqueue(second, "echo", {"n": n}, priority=n))
                    ids.append(jobfleet.enqueue(second, "echo", idempotency_key=f"k{n}"))
            ids.extend(jobfleet.enqueue_many(app, "echo", [{"n": n}, {"m": n}], queue="bulk"))
            app.commit()
            job = ids[-1]
            assert jobfleet.get(job, conn=other)["queue"] == "bulk"
            assert jobfleet.cancel(job, conn=other) == "cancelled"
            other.commit()
            assert jobfleet.retry(job, conn=app) == "queued"
            app.commit()
    assert len(set(ids)) == len(ids) == ROUNDS * 5
    assert _job_count(conn, ids) == len(ids)


def test_asyncio_enqueue_through_transaction_pooling(
    bouncer: Bouncer, conn: psycopg.Connection[Any]
) -> None:
    async def scenario() -> list[int]:
        ids = []
        async with (
            await psycopg.AsyncConnection.connect(bouncer.url, prepare_threshold=0) as app,
            await psycopg.AsyncConnection.connect(bouncer.url) as other,
        ):
            for n in range(ROUNDS):
                async with other.transaction():  # holds one server connection
                    ids.append(await jobfleet.aio.enqueue(other, "echo", {"n": n}))
                    async with app.transaction():
                        ids.append(await jobfleet.aio.enqueue(app, "echo", {"n": n}))
                async with app.transaction():  # maybe the other one now
                    ids.append(await jobfleet.aio.enqueue(app, "echo", {"again": n}))
                    ids.extend(await jobfleet.aio.enqueue_many(app, "echo", [1, 2]))
                    assert (await jobfleet.aio.get(ids[-1], conn=app))["state"] == "queued"
        return ids

    ids = asyncio.run(scenario())
    assert len(set(ids)) == len(ids) == ROUNDS * 5
    assert _job_count(conn, ids) == len(ids)


@pytest.fixture
def through_bouncer(bouncer: Bouncer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """JOBFLEET_DATABASE_URL pointing at PgBouncer, for the calls that open their own
    connection."""
    monkeypatch.setenv("JOBFLEET_DATABASE_URL", bouncer.url)
    settings_module.settings.cache_clear()
    yield
    monkeypatch.undo()
    settings_module.settings.cache_clear()


def test_calls_on_their_own_connection_through_transaction_pooling(
    through_bouncer: None, conn: psycopg.Connection[Any]
) -> None:
    """get, cancel, retry and wait without conn= open a connection of their own: no startup
    options (PgBouncer refuses them), nothing prepared, a transaction per call or per look."""
    for n in range(ROUNDS // 4):
        job_id = jobfleet.enqueue(conn, "echo", {"n": n})
        assert jobfleet.get(job_id)["payload"] == {"n": n}
        with pytest.raises(TimeoutError):
            jobfleet.wait(job_id, timeout=0.2)  # several looks, each its own transaction
        assert jobfleet.cancel(job_id) == "cancelled"
        with pytest.raises(jobfleet.JobFailed, match="cancelled"):
            jobfleet.wait(job_id, timeout=5)
        assert jobfleet.retry(job_id) == "queued"

    async def aio(job_id: int) -> str:
        assert (await jobfleet.aio.get(job_id))["state"] == "queued"
        with pytest.raises(TimeoutError):
            await jobfleet.aio.wait(job_id, timeout=0.2)
        assert await jobfleet.aio.cancel(job_id) == "cancelled"
        with pytest.raises(jobfleet.JobFailed, match="cancelled"):
            await jobfleet.aio.wait(job_id, timeout=5)
        return await jobfleet.aio.retry(job_id)

    for _ in range(ROUNDS // 4):
        assert asyncio.run(aio(jobfleet.enqueue(conn, "echo"))) == "queued"


def test_a_supervisor_pointed_at_pgbouncer_refuses_to_start_saying_why(bouncer: Bouncer) -> None:
    """Supervisors connect directly (README, Connection poolers): their statement and idle
    timeouts are startup options, which PgBouncer refuses in every pool mode. A node pointed
    at it must stop at once with the reason, not run without its bounds."""
    env = {**os.environ, "JOBFLEET_DATABASE_URL": bouncer.url}
    done = subprocess.run(
        [JOBFLEET, "supervisor", "--burst", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "unsupported startup parameter: options" in done.stderr, done.stderr


@pytest.fixture
def api(bouncer: Bouncer, db_url: str, tmp_path: Path) -> Iterator[str]:
    """`jobfleet api` as its own process, its database URL pointing at PgBouncer, with a
    1 s statement timeout."""
    port = free_port()
    env = {
        **os.environ,
        "JOBFLEET_DATABASE_URL": bouncer.url,
        "JOBFLEET_STATEMENT_TIMEOUT_SECONDS": "1",
    }
    log = tmp_path / "api.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [JOBFLEET, "api", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, f"jobfleet api exited:\n{log.read_text()}"
        try:
            return call("GET", f"{base}/readyz")[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, "jobfleet api to be ready through pgbouncer")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_http_api_serves_through_transaction_pooling(
    api: str, conn: psycopg.Connection[Any]
) -> None:
    key = make_key(conn, "pooled", "enqueue,read,cancel")
    ids = []
    for n in range(ROUNDS):
        status, job, _ = call("POST", f"{api}/jobs", key, {"type": "echo", "payload": {"n": n}})
        assert status == 201, job
        status, shown, _ = call("GET", f"{api}/jobs/{job['id']}", key)
        assert status == 200, shown
        assert shown["payload"] == {"n": n}
        ids.append(job["id"])
    status, batch, _ = call("POST", f"{api}/jobs:batch", key, {"jobs": [{"type": "echo"}] * 3})
    assert status == 201, batch
    assert _job_count(conn, ids + batch["ids"]) == ROUNDS + 3


def test_the_statement_timeout_holds_for_api_requests_through_pgbouncer(
    api: str, conn: psycopg.Connection[Any], db_url: str
) -> None:
    """The timeout is not a startup option any more (PgBouncer refuses those): a request
    whose statement waits on a row lock is still ended after the configured 1 s."""
    key = make_key(conn, "timed", "enqueue,read,cancel")
    job_id = jobfleet.enqueue(conn, "echo")
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        started = time.monotonic()
        status, body, _ = call("DELETE", f"{api}/jobs/{job_id}", key)
        waited = time.monotonic() - started
    assert status == 503, body
    assert 1 <= waited < 8, waited
    status, body, _ = call("DELETE", f"{api}/jobs/{job_id}", key)  # the lock is gone
    assert (status, body["state"]) == (200, "cancelled"), body
