"""A rolling upgrade: the previous release (its git tag, built into a venv of its own) and this
one on one database while jobs flow. This release migrates under the old node, a new node joins,
the old one drains on SIGTERM and a new one replaces it: every job ends once, none lost, none
doubled, and the migrations were additive (tests/schema_rules.py), whatever they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import jobfleet
from jobfleet.node_process import NodeProcess
from tests.conftest import JOBFLEET, ROOT, scalar, wait_until
from tests.fleet_support import FAST, double_successes
from tests.schema_rules import breaking_changes, read_schema

# The release before this one: bump both when tagging a release (README, "Development").
PREVIOUS_RELEASE = "v0.1.0"
PREVIOUS_COMMIT = "8eb966ef9b73b8871ff2a993afc92f0f9b2dca09"

# Nothing is killed here: a long lease, so a loaded machine cannot make an attempt `lost`.
ENV = {**FAST, "JOBFLEET_LEASE_SECONDS": "15", "JOBFLEET_GRACE_SECONDS": "60"}
# One round of work: (type, payload, count, options). Retries and deaths ride along.
ROUND = [
    ("noop", {}, 40, {}),
    ("sleep", {"seconds": 0.1}, 30, {}),
    ("flaky", {"fail_times": 1}, 8, {"backoff": "fixed:0.2"}),
    ("fail", {"message": "expected"}, 4, {"max_attempts": 2, "backoff": "fixed:0.2"}),
]
PER_ROUND = sum(count for _, _, count, _ in ROUND)
# Jobs of a queue only the old node serves, there to be running when the deploy stops it.
DEPLOY, HELD = "deploy", 4


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=300)


def previous_release_revision() -> str:
    """The tag, or its commit when a clone has no tags; fetched when a shallow clone lacks it."""
    revisions = (PREVIOUS_RELEASE, PREVIOUS_COMMIT)
    fetches = (("tag", PREVIOUS_RELEASE), (PREVIOUS_COMMIT,))
    errors = []
    for fetch in (None, *fetches):
        if fetch is not None:
            done = _git("fetch", "--quiet", "--no-tags", "origin", *fetch)
            errors.append(done.stderr.decode(errors="replace").strip())
        for revision in revisions:
            if _git("cat-file", "-e", f"{revision}^{{commit}}").returncode == 0:
                return revision
    pytest.fail(
        f"the previous release ({PREVIOUS_RELEASE}, commit {PREVIOUS_COMMIT}) is not in this "
        f"clone and could not be fetched from origin ({'; '.join(errors)}): "
        f"run `git fetch origin tag {PREVIOUS_RELEASE}`"
    )


@pytest.fixture(scope="module")
def previous_jobfleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The previous release's `jobfleet` command: its tree from git, installed without its
    dependencies into a venv that shares this one's (a .pth file), in a few seconds."""
    home = tmp_path_factory.mktemp("previous-release")
    tree, venv = home / "tree", home / "venv"
    tree.mkdir()
    archive = _git("archive", previous_release_revision())
    assert archive.returncode == 0, archive.stderr
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "shared_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    installed = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", str(tree)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    yield str(venv / "bin" / "jobfleet")


def run(command: str, url: str, *args: str) -> str:
    env = {**os.environ, "JOBFLEET_DATABASE_URL": url}
    done = subprocess.run([command, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, f"{command} {' '.join(args)}: {done.stderr}"
    return done.stdout


def enqueue_round_with_cli(command: str, url: str, folder: Path) -> None:
    """A round through a release's CLI (`enqueue --from-jsonl`): a client of that release."""
    for kind, payload, count, options in ROUND:
        lines = folder / f"{kind}.jsonl"
        lines.write_text((json.dumps(payload) + "\n") * count)
        flags = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
        assert run(command, url, "enqueue", kind, "--from-jsonl", str(lines), *flags).strip() == (
            str(count)
        )


def enqueue_round_with_api(url: str) -> None:
    """A round through this release's Python API."""
    with psycopg.connect(url) as conn:
        for kind, payload, count, options in ROUND:
            jobfleet.enqueue_many(conn, kind, [payload] * count, **options)


def attempts_by(conn: psycopg.Connection[Any], node: str, since: Any = None) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM job_attempts WHERE node = %s AND started_at >= %s",
            (node, since or "-infinity"),
        )
    )


def test_previous_release_and_this_one_share_a_migrated_database_through_a_deploy(
    fresh_db: str, previous_jobfleet: str, tmp_path: Path
) -> None:
    previous_version = run(previous_jobfleet, fresh_db, "--version").split()[-1]
    assert previous_version != jobfleet.__version__, "the previous release is this one"
    nodes: list[NodeProcess] = []

    def node(name: str, *args: str, command: str | None = None) -> NodeProcess:
        started = NodeProcess(
            name,
            "--workers",
            "2",
            *args,
            command=command,
            log_path=tmp_path / f"{name}.log",
            env={**os.environ, **ENV, "JOBFLEET_DATABASE_URL": fresh_db},
            cwd=tmp_path,
        )
        nodes.append(started)
        return started

    conn = psycopg.connect(fresh_db, autocommit=True)
    try:
        # The database as the previous release left it, its node at work.
        run(previous_jobfleet, fresh_db, "migrate")
        before = read_schema(fresh_db)
        # The old node alone also serves DEPLOY: what it holds when the deploy stops it.
        old = node("old", "--queues", f"default,{DEPLOY}", command=previous_jobfleet)
        enqueue_round_with_cli(previous_jobfleet, fresh_db, tmp_path)
        wait_until(lambda: attempts_by(conn, "old") >= 10, 60, "the old node at work")

        # This release migrates under it: additive, and the old node keeps working.
        run(JOBFLEET, fresh_db, "migrate")
        migrated_at = scalar(conn, "SELECT now()")
        assert breaking_changes(before, read_schema(fresh_db)) == []
        first_new = node("new-1", "--queues", "default")
        enqueue_round_with_api(fresh_db)
        enqueue_round_with_cli(previous_jobfleet, fresh_db, tmp_path)  # an old client, too
        wait_until(
            lambda: (
                attempts_by(conn, "old", migrated_at) >= 10 and attempts_by(conn, "new-1") >= 10
            ),
            60,
            "both releases claiming from the migrated database",
        )

        # The deploy replaces the old node: a drain while it holds jobs, then a new node
        # (serving every queue) that takes what the old one left.
        jobfleet.enqueue_many(conn, "sleep", [{"seconds": 1}] * HELD, queue=DEPLOY)
        wait_until(
            lambda: scalar(
                conn,
                "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE 'old/%%'"
                " AND queue = %s",
                (DEPLOY,),
            ),
            60,
            "the old node holding running jobs",
        )
        assert old.stop(90) == 0, old.log_tail()
        second_new = node("new-2")
        enqueue_round_with_api(fresh_db)
        wait_until(
            lambda: (
                scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == 0
            ),
            120,
            "every job finished",
        )
        for new in (first_new, second_new):
            assert new.poll() is None, new.log_tail()
            assert attempts_by(conn, new.name) > 0, new.log_tail()

        # Every job ended once: none lost, none doubled, each attempt recorded once.
        assert scalar(conn, "SELECT count(*) FROM jobs") == 4 * PER_ROUND + HELD
        states = dict(
            conn.execute("SELECT type || ':' || state, count(*) FROM jobs GROUP BY 1").fetchall()
        )
        expected = {
            f"{kind}:{'dead' if kind == 'fail' else 'succeeded'}": 4 * count
            for kind, _, count, _ in ROUND
        }
        expected["sleep:succeeded"] += HELD
        assert states == expected
        assert double_successes(conn) == 0
        assert (
            scalar(
                conn,
                "SELECT count(*) FROM jobs j WHERE (SELECT count(DISTINCT a.attempt) FROM"
                " job_attempts a WHERE a.job_id = j.id AND a.attempt BETWEEN 1 AND j.attempt)"
                " <> j.attempt OR (SELECT count(*) FROM job_attempts a WHERE a.job_id = j.id)"
                " <> j.attempt",
            )
            == 0
        )
        outcomes = {row[0] for row in conn.execute("SELECT DISTINCT outcome FROM job_attempts")}
        assert outcomes == {"succeeded", "failed"}, "nothing was killed: no attempt is lost"
    finally:
        conn.close()
        for started in nodes:
            started.kill()
