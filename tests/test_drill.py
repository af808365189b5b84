"""`jobfleet drill`: a short drill on the test database passes its invariants, and the drill
refuses a database that holds other queues' jobs."""

from __future__ import annotations

from typing import Any

import psycopg

import jobfleet
from tests.conftest import Cli, scalar

DRILL_QUEUE = "jobfleet-drill"


def test_a_short_drill_holds_every_invariant(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    result = cli("drill", "--nodes", "2", "--jobs", "300", "--duration", "8", "--seed", "3")
    report = result.stdout
    assert result.returncode == 0, report + result.stderr
    assert "every invariant holds" in report
    assert "BROKEN" not in report
    # Progress went to stderr while it ran; the faults it reports really struck.
    assert "killed node drill-" in result.stderr
    assert "paused node drill-" in result.stderr
    # What the report claims, the database shows.
    states = dict(
        conn.execute(
            "SELECT state, count(*) FROM jobs WHERE queue = %s GROUP BY state", (DRILL_QUEUE,)
        ).fetchall()
    )
    dead_types = {r[0] for r in conn.execute("SELECT DISTINCT type FROM jobs WHERE state = 'dead'")}
    assert sum(states.values()) == 300
    assert set(states) == {"succeeded", "dead"}
    assert dead_types == {"drill_fail", "drill_charge_declined"}
    # The transactional kinds' business rows: one per succeeded charge job, by the attempt
    # that succeeded; none for the declined (dead) ones.
    assert "ok      business rows = succeeded transactional jobs, one each" in report
    charges = conn.execute(
        "SELECT j.type, j.state, j.attempt = c.attempt FROM drill_charges c "
        "JOIN jobs j ON j.id = c.job_id"
    ).fetchall()
    succeeded_charges = scalar(
        conn, "SELECT count(*) FROM jobs WHERE type = 'drill_charge' AND state = 'succeeded'"
    )
    assert succeeded_charges > 0
    assert sorted(charges) == [("drill_charge", "succeeded", True)] * succeeded_charges
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE outcome = 'lost'") > 0
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE outcome = 'crashed'") > 0
    # Its nodes are gone from the registry.
    assert scalar(conn, "SELECT count(*) FROM nodes WHERE name LIKE 'drill-%'") == 0


def test_the_drill_refuses_a_database_with_other_jobs(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    job = jobfleet.enqueue(conn, "echo", {"mine": True})
    result = cli("drill", "--nodes", "2", "--jobs", "50", "--duration", "2")
    assert result.returncode == 2  # a refusal of the command as given, like bad input
    assert "--yes" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job,)) == "queued"


def test_the_drill_needs_two_nodes(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    result = cli("drill", "--nodes", "1")
    assert result.returncode == 2
    assert "--nodes" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_cleanup_removes_the_drills_jobs_after_its_report(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    result = cli("drill", "--nodes", "2", "--jobs", "60", "--duration", "3", "--cleanup")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every invariant holds" in result.stdout
    assert "removed the drill's 60 jobs and drill_charges (--cleanup)" in result.stdout
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE queue = %s", (DRILL_QUEUE,)) == 0
    assert scalar(conn, "SELECT to_regclass('drill_charges')") is None
