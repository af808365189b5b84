"""Handler modules of one's own application: found as `python -m` would find them, or in
--pythonpath folders first; a module whose own import fails shows its traceback."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

import psycopg

import jobfleet
from tests.conftest import JOBFLEET, ROOT, Cli, scalar


def test_version_prints_the_installed_version(cli: Cli) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert cli.ok("--version").strip() == f"jobfleet {version}"
    assert jobfleet.__version__ == version


def test_pythonpath_folders_are_searched_first_from_any_working_directory(
    conn: psycopg.Connection[Any], cli: Cli, tmp_path: Path
) -> None:
    app = tmp_path / "app"
    (app / "myapp").mkdir(parents=True)
    (app / "myapp" / "__init__.py").write_text("")
    (app / "myapp" / "jobs.py").write_text(
        "from jobfleet.worker import handler\n"
        "@handler('greet')\n"
        "def greet(payload):\n"
        "    return 'hello ' + payload['name']\n"
    )
    job = jobfleet.enqueue(conn, "greet", {"name": "app"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [JOBFLEET, "supervisor", "--workers", "1", "--burst", "--handlers", "myapp.jobs",
         "--pythonpath", str(app)],
        cwd=elsewhere, env=cli.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert scalar(conn, "SELECT result FROM jobs WHERE id = %s", (job,)) == "hello app"


def test_a_missing_module_is_named_with_where_it_was_looked_for(cli: Cli, tmp_path: Path) -> None:
    missing = cli("supervisor", "--handlers", "nowhere.jobs", "--pythonpath", str(tmp_path))
    assert missing.returncode == 2
    assert "no module named 'nowhere'" in missing.stderr
    assert str(tmp_path) in missing.stderr and "--pythonpath" in missing.stderr
    assert "Traceback" not in missing.stderr
    not_a_folder = cli("supervisor", "--pythonpath", str(tmp_path / "nope"))
    assert not_a_folder.returncode == 2 and "is not a folder" in not_a_folder.stderr


def test_a_module_whose_own_import_fails_shows_its_traceback(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('config missing')\n")
    (tmp_path / "needy.py").write_text("import a_dependency_nobody_installed\n")
    for module, line in (
        ("broken", "RuntimeError: config missing"),
        ("needy", "No module named 'a_dependency_nobody_installed'"),
    ):
        failed = cli("supervisor", "--handlers", module, "--pythonpath", str(tmp_path))
        assert failed.returncode == 2, failed.stderr
        assert "Traceback" in failed.stderr and line in failed.stderr, failed.stderr
        assert f"{module}.py" in failed.stderr
