"""Oban for Python as a peer. It needs Python 3.12+, so it runs on an interpreter of its own:
the first Python 3.12 or newer found here (`python3.1x` on PATH, pyenv's versions, `uv python
find`), in a venv the bench makes once in its cache (`$XDG_CACHE_HOME/jobfleet-bench`, else
`~/.cache/jobfleet-bench`) with `oban` installed by pip. Without such an interpreter it says so
and skips.

Drain: its schema in a database of its own, the no-op async jobs inserted in bulk
(`enqueue_many`, 1,000 a statement), then `workers` Oban nodes with the queue's limit at 50
(many light async jobs at once on the node's event loop), timed from their start until no job
is left unfinished; the nodes never exit on an empty queue, so they are then stopped. The
Oban side is `oban_runner.py`, run by path on that venv.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import OFFLINE_ENV, offline, rate, run_until
from jobfleet.bench.scratch import scalar

VERSION = "0.7.0"  # pinned: figures from one run to the next compare the same code
LIMIT = 50
NEEDS = (3, 12)
LEFT = "SELECT count(*) FROM oban_jobs WHERE state <> 'completed'"
INSTALL_TIMEOUT = 600.0
RUNNER = Path(__file__).with_name("oban_runner.py")
NOT_FOUND = "Oban for Python needs Python 3.12+, not found"
PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def candidates(env: Mapping[str, str] = os.environ) -> list[str]:
    """Interpreters worth asking, newest names first; most will not exist."""
    names = [shutil.which(f"python3.{minor}", path=env.get("PATH")) for minor in (14, 13, 12)]
    pyenv = env.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = sorted(glob.glob(f"{pyenv}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    uv = shutil.which("uv", path=env.get("PATH"))
    if uv:
        done = subprocess.run([uv, "python", "find", ">=3.12"], capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
        found += [done.stdout.strip()] if done.returncode == 0 and done.stdout.strip() else []
    return [c for c in [*names, *found] if c]


def version_of(python: str) -> tuple[int, int] | None:
    """The interpreter's (major, minor), or None where it does not run (a pyenv shim for a
    version not selected, a broken link)."""
    try:
        done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    major, _, minor = done.stdout.strip().partition(".")
    if done.returncode != 0 or not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def pick(found: Iterable[str], version: Callable[[str], tuple[int, int] | None]) -> str | None:
    """The first interpreter of 3.12 or newer."""
    for python in found:
        v = version(python)
        if v is not None and v >= NEEDS:
            return python
    return None


def venv_dir(version: tuple[int, int], env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jobfleet-bench" / f"oban-{VERSION}-py{version[0]}.{version[1]}"


def _venv_python(home: Path) -> Path:
    return home / "bin" / "python"


def _found() -> tuple[str, tuple[int, int]] | None:
    python = pick(candidates(), version_of)
    if python is None:
        return None
    version = version_of(python)
    return (python, version) if version else None


def unavailable() -> str | None:
    """Why Oban for Python cannot run here, or None."""
    found = _found()
    if found is None:
        return NOT_FOUND
    home = venv_dir(found[1])
    if offline() and not _venv_python(home).exists():
        return f"oban not in {home} and {OFFLINE_ENV} is set"
    return None


def install() -> Path:
    """The venv's python, with oban installed (made the first time)."""
    found = _found()
    if found is None:
        raise BenchError(NOT_FOUND)
    python, version = found
    home = venv_dir(version)
    if not _venv_python(home).exists():
        home.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=".oban-", dir=home.parent))
        try:
            for argv in (
                [python, "-m", "venv", str(fresh)],
                [str(_venv_python(fresh)), "-m", "pip", "install", "--quiet", f"oban=={VERSION}"],
            ):
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
                if done.returncode != 0:
                    raise BenchError(f"{' '.join(argv[:4])} failed: {done.stderr[-600:]}")
            if not _venv_python(home).exists():  # another bench may have won the race
                shutil.rmtree(home, ignore_errors=True)
                fresh.rename(home)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return _venv_python(home)


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    python = str(install())
    script = str(RUNNER)
    done = subprocess.run([python, script, "fill", str(jobs), url], capture_output=True,
                          text=True, timeout=INSTALL_TIMEOUT, check=False)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"oban_runner.py fill exited {done.returncode}: {done.stderr[-600:]}")
    seconds = run_until([python, script, "work", str(LIMIT), url], workers, url, LEFT)
    if scalar(url, LEFT):
        raise BenchError("Oban's nodes stopped with jobs not done")
    return rate(jobs, seconds, limit=LIMIT, python=Path(python).parent.parent.name)
