"""NodeProcess.wait: the exit code as the process exits, a timeout as Popen's, and the same
code again once the process is reaped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobfleet.node_process import NodeProcess


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-jobfleet"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_wait_gives_the_exit_code_and_gives_it_again(tmp_path: Path) -> None:
    node = NodeProcess(
        "n", log_path=tmp_path / "n.log", command=script(tmp_path, 'echo "$@"; exit 3')
    )
    assert node.wait(30) == 3
    assert node.wait(30) == 3  # reaped: no pidfd to open, Popen has the code
    assert node.log().split() == ["supervisor", "--node-name", "n"]


def test_wait_times_out_while_the_process_runs(tmp_path: Path) -> None:
    node = NodeProcess("n", log_path=tmp_path / "n.log", command=script(tmp_path, "exec sleep 60"))
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            node.wait(0.05)
        assert node.poll() is None
    finally:
        node.kill()
    assert node.poll() is not None
