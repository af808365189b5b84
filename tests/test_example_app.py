"""A user's path from `pip install` to a job done in their own app: a wheel of this project,
installed (not editable) into a fresh venv outside the repository, runs the example shop
(examples/shop): its FastAPI app enqueues with jobfleet.aio inside the request's transaction,
and a supervisor started from another folder runs its handlers with --pythonpath."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, scalar, wait_until
from tests.user_typing import MYPY_TIMEOUT, strict_mypy_checks

# What a wheel is not built from: the checkout's venv, caches and earlier builds.
NOT_SOURCE = (".git", ".venv", "build", "*.egg-info", "*_cache", "__pycache__")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # it answered, if only with an error
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with a wheel of this project installed (not
    editable), as a user's `pip install` makes it; shared by this module's tests."""
    base = tmp_path_factory.mktemp("installed")
    wheels, venv = base / "wheels", base / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # pip builds in the source tree (its build/ folder): two test processes building at once
    # collide there, so each builds from a copy of its own.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, source], check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    [wheel] = wheels.glob("jobfleet-*.whl")
    subprocess.run([*venv_pip(venv), "install", wheel], check=True, timeout=600)
    where = subprocess.run(
        [venv / "bin/python", "-c", "import jobfleet.sql, jobfleet; print(jobfleet.__file__)"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where  # the installed copy, not the repository's
    return venv


@pytest.fixture(scope="module")
def frameworks(installed: Path) -> Path:
    """The installed venv with Django and SQLAlchemy as an app would have them (one pip call);
    they are the recipes' dependencies, never jobfleet's."""
    subprocess.run(
        [*venv_pip(installed), "install", "django", "sqlalchemy"], check=True, timeout=600
    )
    return installed


def venv_pip(venv: Path) -> list[Any]:
    return [venv / "bin/python", "-m", "pip", "--disable-pip-version-check", "-q"]


def test_an_app_installed_from_the_wheel_runs_its_jobs(
    conn: psycopg.Connection[Any], db_url: str, tmp_path: Path, installed: Path
) -> None:
    venv = installed

    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "shop", app)
    conn.execute((app / "schema.sql").read_text())
    env = {"JOBFLEET_DATABASE_URL": db_url, "SHOP_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([venv / "bin/jobfleet", "migrate"], env=env, check=True, timeout=60)
    port = _free_port()
    web = subprocess.Popen(
        [venv / "bin/python", "-m", "uvicorn", "shop.web:app", "--port", str(port)],
        cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    node = subprocess.Popen(
        [venv / "bin/jobfleet", "supervisor", "--workers", "2", "--node-name", "shop",
         "--handlers", "shop.jobs", "--pythonpath", str(app)],
        cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/docs"), timeout=60, what="the shop to answer")
        placed = [_post(f"{base}/orders?item=book{n}") for n in range(6)]
        assert all(status == 200 for status, _ in placed), placed
        declined = _post(f"{base}/orders?item=pen&declined=true")
        assert declined == (402, {"detail": "payment declined"})
        orders = [r[0] for r in conn.execute("SELECT item FROM orders ORDER BY id")]
        assert orders == [f"book{n}" for n in range(6)]  # the declined one vanished
        jobs = [body["job"] for _, body in placed]
        assert sorted(r[0] for r in conn.execute("SELECT id FROM jobs")) == sorted(jobs)
        with urllib.request.urlopen(
            f"{base}/orders/{placed[0][1]['order']}/receipt?job={jobs[0]}", timeout=60
        ) as response:
            assert json.loads(response.read())["order"] == placed[0][1]["order"]
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND id = ANY(%s)", (jobs,)
                ).fetchone()
                == (len(jobs),)
            ),
            timeout=60,
            what="every receipt to be sent",
        )
        results = [
            r[0] for r in conn.execute("SELECT result FROM jobs WHERE id = ANY(%s)", (jobs,))
        ]
        # Each worker's own mailer, made by its start hook after the fork.
        assert all(r["mailer_of"] == r["pid"] for r in results), results
    finally:
        for process in (node, web):
            process.terminate()
        node.wait(30)
        web.wait(30)


@pytest.mark.parametrize("recipe", ["django_enqueue.py", "sqlalchemy_enqueue.py"])
def test_a_frameworks_transaction_takes_its_jobs_with_it(
    recipe: str, conn: psycopg.Connection[Any], db_url: str, tmp_path: Path, frameworks: Path
) -> None:
    """The README's recipes for Django and SQLAlchemy, run as written (examples/recipes/) from
    a folder outside the repository: an order and its job commit together in the framework's
    transaction, or neither is written; and get on the framework's connection shows the job
    in the contract's shape."""
    script = tmp_path / recipe
    shutil.copy(ROOT / "examples" / "recipes" / recipe, script)
    env = {"DATABASE_URL": db_url, "JOBFLEET_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    try:
        done = subprocess.run(
            [frameworks / "bin/python", script],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        committed, rolled_back = report["committed"], report["rolled_back"]
        orders = [r[0] for r in conn.execute("SELECT id FROM recipe_orders ORDER BY id")]
        assert orders == [committed["order"]]  # the declined order vanished
        ready = conn.execute(
            "SELECT id, type, payload FROM jobs WHERE state = 'queued' AND run_at <= now()"
        ).fetchall()
        assert ready == [(committed["job"], "send_receipt", {"order": committed["order"]})]
        assert scalar(conn, "SELECT count(*) FROM jobs WHERE id = %s", (rolled_back["job"],)) == 0
        shown = report["shown"]
        assert (shown["id"], shown["state"]) == (committed["job"], "queued")
        assert shown["payload"] == {"order": committed["order"]}  # JSON, not Django's text
    finally:
        conn.execute("DROP TABLE IF EXISTS recipe_orders")


def test_a_users_strict_mypy_passes_after_pip_install(installed: Path, tmp_path: Path) -> None:
    """A user's `mypy --strict` on code calling the API, with jobfleet as `pip install` puts
    it (the wheel's py.typed and annotations), from a folder outside the repository."""
    subprocess.run([*venv_pip(installed), "install", "mypy"], check=True, timeout=MYPY_TIMEOUT)
    strict_mypy_checks(installed / "bin/python", tmp_path)


def test_the_console_pages_and_assets_travel_in_the_wheel(installed: Path) -> None:
    """The console's templates, stylesheet and script are package data: a regular install
    renders its sign-in page and serves both files."""
    code = (
        "from jobfleet.http.console import render\n"
        "signin = render.page('signin.html', title='Sign in', error=None, current='').body\n"
        "print(b'API key' in signin, len(render.asset('console.js')),"
        " len(render.asset('console.css')))"
    )
    shown = subprocess.run(
        [installed / "bin/python", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    found, script, style = shown.stdout.split()
    assert found == "True" and int(script) > 1000 and int(style) > 1000
