"""The zero-configuration database: started on first use, shared, stoppable."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from jobfleet.embedded import EmbeddedCluster, bin_dir
from tests.conftest import JOBFLEET, ROOT


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBFLEET_DATABASE_URL": "", "JOBFLEET_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [JOBFLEET, *args], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )


def test_first_use_starts_one_cluster_shared_by_concurrent_processes(open_tmp: Path) -> None:
    data_dir = open_tmp / "jf"
    env = {**os.environ, "JOBFLEET_DATABASE_URL": "", "JOBFLEET_DATA_DIR": str(data_dir)}
    procs = [
        subprocess.Popen(
            [JOBFLEET, "db", "url"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1
    try:
        assert run(data_dir, "migrate").returncode == 0
        job_id = run(data_dir, "enqueue", "echo", "--payload", "7").stdout.strip()
        with psycopg.connect(urls.pop()) as conn:
            row = conn.execute("SELECT payload FROM jobs WHERE id = %s", (int(job_id),))
            assert row.fetchone() == (7,)
        assert run(data_dir, "db", "stop").stdout.strip() == "stopped"
        assert run(data_dir, "db", "stop").stdout.strip() == "not running"
        # Used again, it starts again, with the data kept.
        shown = run(data_dir, "jobs", "show", job_id, "--json")
        assert shown.returncode == 0 and '"payload": 7' in shown.stdout
    finally:
        EmbeddedCluster(data_dir).stop()


def test_root_runs_the_server_as_an_unprivileged_user_with_reachable_binaries(
    open_tmp: Path,
) -> None:
    (open_tmp / "jf").mkdir()
    cluster = EmbeddedCluster(open_tmp / "jf")
    if os.geteuid() != 0:
        assert cluster.run_as is None  # a normal user runs the server as itself
        return
    assert cluster.run_as == "jobfleet"
    # A venv inside a directory only root can enter (such as /root): the binaries are copied
    # somewhere the server's user can execute them.
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o700)
    (closed / "pginstall").symlink_to(bin_dir().parent)
    cluster._bin_dir = closed / "pginstall" / "bin"
    result = cluster._run(["postgres", "--version"])
    assert result.returncode == 0 and "PostgreSQL" in result.stdout
    copy = cluster._bin_dir.parent
    try:
        assert str(copy).startswith("/var/tmp/jobfleet-postgres-")
    finally:
        shutil.rmtree(copy, ignore_errors=True)
