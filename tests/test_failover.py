"""Primary failover as a guarantee (issue 22): three supervisors on a multi-host URL with
target_session_attrs=read-write, a primary with a synchronous standby (PostgreSQL's own
streaming replication, jobfleet.drill.formation), the drill's mixed workload; the primary is
killed mid-run (`pg_ctl stop -m immediate`), the standby promoted once the leases have run out
(a failover manager takes longer than a lease to decide). Every job must end once, as its
kind must, with its whole history; nothing may succeed twice or be charged twice; every node
must stay up and be back at work on the new primary within a lease + 5 s of the promotion.

Without PostgreSQL's server programs the module installs Debian's `postgresql-15` when running
as root (as CI does), and fails saying so otherwise: a skipped test proves nothing."""

from __future__ import annotations

import fcntl
import os
import random
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobfleet.drill import queries
from jobfleet.drill.failover import Timeline, back_in_time, clock, first_claims, timeline_table
from jobfleet.drill.formation import Formation, find_bindir
from jobfleet.drill.invariants import job_checks
from jobfleet.drill.nodes import LocalNode
from jobfleet.drill.report import checks_table
from jobfleet.drill.run import GRACE_SECONDS, LEASE_SECONDS, NODE_SETTINGS
from jobfleet.drill.workload import QUEUE, enqueue_workload
from jobfleet.migrate import migrate
from tests.conftest import JOBFLEET, scalar, wait_until

INSTALL_LOCK = Path(tempfile.gettempdir()) / "jobfleet-postgresql-install.lock"
PACKAGE = "postgresql-15"  # Debian 12's server packages (initdb, pg_ctl, pg_basebackup)
NODES = 3
WORKERS = 6  # the drill's slow and charge jobs sleep: more workers, a shorter run
JOBS = 2000
DURATION = 8.0  # seconds over which the jobs fall due
# Nodes must claim on the new primary within this of its promotion: a lease, plus the
# reconnect back-off (at most 5 s between attempts) and the claim itself.
BACK_BOUND = LEASE_SECONDS + 5
# The primary stays down until the leases held at the kill have run out: the case where the
# new primary's first leader reaps them while their nodes still run the jobs.
OUTAGE_SECONDS = LEASE_SECONDS + 1


def server_programs() -> Path:
    """PostgreSQL's server programs, installed from Debian's package first if missing."""
    found = find_bindir()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            f"PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup) are not installed "
            f"and this test runs unprivileged: run `apt-get install {PACKAGE}`, or run the "
            "tests as root (they install it then)",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with INSTALL_LOCK.open("w") as lock:  # two xdist workers: one installs, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not find_bindir():
            install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE]
            done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:  # a fresh machine's package lists may be empty or stale
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
                done = subprocess.run(install, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"apt-get install {PACKAGE} failed:\n{done.stderr}"
    found = find_bindir()
    assert found, f"apt-get installed {PACKAGE} but no pg_ctl is to be found"
    return found


@pytest.fixture
def formation() -> Iterator[Formation]:
    with Formation(server_programs()) as pair:
        yield pair


def _ended(conn: psycopg.Connection[Any]) -> int:
    return int(
        scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled')")
    )


def _all_logged(fleet: list[LocalNode], text: str) -> bool:
    return all(n.process is not None and text in n.process.log() for n in fleet)


# Past the suite's 180 s: a loaded 2-core machine (load 13 measured) took 67 s for what a quiet
# one does in half that; the deadlines inside say what was awaited.
@pytest.mark.timeout(420)
def test_the_fleet_rides_through_a_primary_failover(
    formation: Formation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = formation.url
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)  # on PostgreSQL 15, the formation's
        conn.execute(queries.CREATE_CHARGES)
        ids = enqueue_workload(conn, JOBS, DURATION, random.Random(22))
    every = [i for kind_ids in ids.values() for i in kind_ids]
    env = {**os.environ, **NODE_SETTINGS, "JOBFLEET_DATABASE_URL": url}
    env.pop("JOBFLEET_NODE_NAME", None)
    fleet = [LocalNode(slot=i + 1, env=env, logs=tmp_path, workers=WORKERS) for i in range(NODES)]
    names = [n.name for n in fleet]
    standby = psycopg.connect(formation.server_url(formation.standby), autocommit=True)
    try:
        for node in fleet:
            node.start()
        with psycopg.connect(formation.server_url(formation.primary), autocommit=True) as old:
            wait_until(lambda: _ended(old) >= JOBS // 4, 90, "a quarter of the jobs to end")
        # Strike: the primary goes at once. The standby (read-only) keeps answering: its
        # clock times the failover, and its copy says what was running at the kill.
        formation.kill_primary()
        timeline = Timeline(down=clock(standby), since=clock(standby))
        timeline.running_at_kill = int(scalar(standby, queries.RUNNING_COUNT, {"queue": QUEUE}))
        wait_until(
            lambda: (
                _all_logged(fleet, "database unreachable")
                and (clock(standby) - timeline.down).total_seconds() >= OUTAGE_SECONDS
            ),
            60,
            "every node to see the primary gone, and the leases to run out",
        )
        assert [n.exit_code() for n in fleet] == [None] * NODES, "a node exited in the outage"
        timeline.since = clock(standby)
        formation.promote()
        with psycopg.connect(url, autocommit=True) as new:
            timeline.moments.append(("new primary writable", clock(new)))
            wait_until(lambda: _ended(new) == JOBS, 240, "every job to end on the new primary")
            exits = {n.name: n.stop(GRACE_SECONDS + 5) for n in fleet}
            timeline.first_claims = first_claims(new, every, timeline.since)
            checks = [*job_checks(new, ids), back_in_time(timeline, names, BACK_BOUND)]
            lost = scalar(new, "SELECT count(*) FROM job_attempts WHERE outcome = 'lost'")
            new_port = scalar(new, "SELECT inet_server_port()")
    finally:
        standby.close()
        for node in fleet:
            node.kill()
    report = timeline_table(timeline) + "\n\n" + checks_table(checks)
    with capsys.disabled():  # the timeline of a real run, for the record
        print(f"\n{report}\n{timeline.running_at_kill} jobs running at the kill, {lost} lost")
    assert new_port == formation.standby.port  # the URL led every connection to the new one
    assert timeline.running_at_kill > 0, "the failover struck no running work"
    assert exits == dict.fromkeys(names, 0), f"nodes did not drain cleanly: {exits}"
    assert all(c.ok for c in checks), report + "\n" + formation.logs()
    assert set(timeline.first_claims) >= set(names), report


@pytest.mark.timeout(420)
def test_the_drill_fails_the_primary_over_with_the_users_command(formation: Formation) -> None:
    """`jobfleet drill --failover COMMAND`, as a user with an HA set-up runs it: here the
    command kills the primary and promotes the standby after the pause a failover manager
    takes to decide."""
    command = formation.failover_command(outage_seconds=OUTAGE_SECONDS)
    drill = ["drill", "--nodes", "2", "--workers", "4", "--jobs", "400", "--duration", "6"]
    result = subprocess.run(
        [JOBFLEET, *drill, "--seed", "5", "--failover", command],
        env={**os.environ, "JOBFLEET_DATABASE_URL": formation.url},
        capture_output=True,
        text=True,
        timeout=400,
    )
    report = result.stdout
    assert result.returncode == 0, report + result.stderr[-3000:] + formation.logs()
    assert "every invariant holds" in report
    assert "ok      the failover command ran and succeeded" in report
    assert "ok      every node back at work on the new primary in time" in report
    assert "writable again (first seen)" in report
    assert "first claim by drill-1" in report and "first claim by drill-2" in report
    assert "killed node" not in result.stderr  # the failover instead of the node faults
    assert "the database takes writes again, on another server" in result.stderr
    with psycopg.connect(formation.url) as conn:  # the standby is the primary now
        assert scalar(conn, "SELECT inet_server_port()") == formation.standby.port
        assert scalar(conn, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == 0
