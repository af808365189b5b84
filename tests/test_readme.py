"""The README's Quick start, run as written against a real node: its commands, the ids they
print, and what they show."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import JOBFLEET, ROOT, Cli


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```sh\n(.*?)```", text, re.S)
    assert block is not None
    return [line for line in block[1].splitlines() if not line.startswith("make run")]


def test_the_quick_start_works_as_written(
    conn: psycopg.Connection[Any], cli: Cli, fleet: Any, tmp_path: Path
) -> None:
    fleet("quick", "--workers", "2")
    script = "\n".join(line.replace(".venv/bin/jobfleet", JOBFLEET) for line in quick_start())
    script = script.replace("--backoff fixed:1", "--backoff fixed:0.1")  # a quicker death
    done = subprocess.run(
        ["bash", "-c", script + '\necho "ids $id $dead"'],
        env=cli.env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    ids = re.search(r"ids (\d+) (\d+)", done.stdout)
    assert ids is not None, done.stdout
    echo, dead = int(ids[1]), int(ids[2])
    assert '{"hello": "world"}' in done.stdout  # what jobs wait printed
    assert conn.execute("SELECT state FROM jobs WHERE id = %s", (echo,)).fetchone() == (
        "succeeded",
    )
    assert f"job {dead}  fail" in done.stdout  # jobs show of the dead job
    # dlq retry gave it a fresh budget of three more attempts after its first three.
    budget = conn.execute("SELECT max_attempts FROM jobs WHERE id = %s", (dead,)).fetchone()
    assert budget == (6,)
