"""A user's `mypy --strict` on code calling jobfleet's API (tests/typed_user_app.py), run with
a given interpreter's mypy from a folder outside the repository, so that only jobfleet as
that interpreter has it installed is seen: the editable install `make` makes, or a wheel's."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

MYPY_TIMEOUT = 300

# Mistakes a user's mypy must catch, each with the error it must report: the API's types are
# real, not Any (a test that only ever passed could not tell).
MISTYPED = """\
import psycopg
import jobfleet
import jobfleet.aio

def enqueue_with_a_url(url: str) -> int:
    return jobfleet.enqueue(url, "resize")

def wait_for_a_name() -> None:
    jobfleet.wait("order-7")

async def a_sync_connection(conn: psycopg.Connection[tuple[int]]) -> int:
    return await jobfleet.aio.enqueue(conn, "resize")

def a_state_as_a_number(job_id: int) -> int:
    return jobfleet.cancel(job_id)
"""
MISTYPED_ERRORS = [
    'mistyped.py:6: error: Argument 1 to "enqueue" has incompatible type "str"',
    'mistyped.py:9: error: Argument 1 to "wait" has incompatible type "str"',
    'mistyped.py:12: error: Argument 1 to "enqueue" has incompatible type "Connection[tuple[int]]"',
    'mistyped.py:15: error: Incompatible return value type (got "str", expected "int")',
]


def strict_mypy_checks(python: Path, folder: Path) -> None:
    """The correct module passes `mypy --strict`; the mistyped one fails with each error."""
    shutil.copy(ROOT / "tests" / "typed_user_app.py", folder / "user_app.py")
    (folder / "mistyped.py").write_text(MISTYPED)

    def mypy(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "mypy", "--strict", "--cache-dir", folder / ".mypy_cache", module],
            cwd=folder, capture_output=True, text=True, timeout=MYPY_TIMEOUT,
        )  # fmt: skip

    good = mypy("user_app.py")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy("mistyped.py")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    for error in MISTYPED_ERRORS:
        assert error in bad.stdout, bad.stdout
    assert bad.stdout.count(": error:") == len(MISTYPED_ERRORS), bad.stdout
