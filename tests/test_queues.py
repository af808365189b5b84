"""Queues paused and resumed for the whole cluster: the CLI, the HTTP API, and real nodes that
stop claiming from a paused queue within a second."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi.testclient import TestClient

import jobfleet
from jobfleet import admin
from jobfleet.http.server import free_port
from tests.conftest import Cli, all_finished, scalar, wait_until
from tests.http_support import bearer, make_key, scrape_metrics


def test_the_cli_pauses_lists_and_resumes_a_queue(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    jobfleet.enqueue(conn, "echo", queue="emails")
    assert cli.ok("queues", "pause", "emails").strip() == "queue emails paused"
    (emails,) = [q for q in cli.json("queues", "list", "--json") if q["queue"] == "emails"]
    assert emails == {
        "queue": "emails",
        "counts": {"queued": 1, "running": 0, "succeeded": 0, "cancelled": 0, "dead": 0},
        "paused": True,
    }
    assert "paused" in cli.ok("queues", "list").splitlines()[-1]
    assert cli.json("status", "--json")["paused_queues"] == ["emails"]
    assert "paused queues (no node claims from them): emails" in cli.ok("status")
    assert cli.ok("queues", "resume", "emails").strip() == "queue emails resumed"
    assert cli.json("status", "--json")["paused_queues"] == []


def test_a_bad_queue_name_is_refused_and_nothing_is_written(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    done = cli("queues", "pause", "no spaces")
    assert done.returncode == 2 and "queue 'no spaces' is not valid" in done.stderr
    assert scalar(conn, "SELECT count(*) FROM queues") == 0


def test_the_http_api_pauses_with_the_admin_scope_only(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    reader = bearer(make_key(conn, "reader", "read"))
    steerer = bearer(make_key(conn, "steerer", "admin,read"))
    refused = client.post("/queues/emails/pause", headers=reader)
    assert refused.status_code == 403 and "'admin'" in refused.json()["message"]
    assert admin.paused_queues(conn) == []

    paused = client.post("/queues/emails/pause", headers=steerer)
    assert (paused.status_code, paused.json()) == (200, {"queue": "emails", "paused": True})
    listed = client.get("/queues", headers=reader).json()["queues"]
    assert {"queue": "emails", "paused": True}.items() <= listed[0].items()

    resumed = client.post("/queues/emails/resume", headers=steerer)
    assert (resumed.status_code, resumed.json()) == (200, {"queue": "emails", "paused": False})
    bad = client.post("/queues/no%20spaces/pause", headers=steerer)
    assert bad.status_code == 422 and bad.json()["field"] == "path.name"
    assert admin.paused_queues(conn) == []


def test_a_pause_stops_every_node_claiming_within_a_second_and_a_resume_starts_them(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    ids = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.05}] * 600, queue="q")
    other = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.05}] * 20, queue="other")
    for name in ("a", "b", "c"):
        fleet(name, "--workers", "1")
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") >= 30,
        what="the nodes to be at work",
    )
    admin.set_paused(conn, "q", True)
    paused_at = scalar(conn, "SELECT clock_timestamp()")

    # Jobs claimed before the pause finish; the other queue runs on; none of q is claimed later.
    wait_until(lambda: scalar(
        conn, "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'succeeded'", (other,)
    ) == 20, what="the other queue's jobs")  # fmt: skip
    wait_until(lambda: scalar(
        conn, "SELECT count(*) FROM jobs WHERE queue = 'q' AND state = 'running'"
    ) == 0, what="the jobs claimed before the pause to finish")  # fmt: skip
    last_claim = scalar(conn, "SELECT max(started_at) FROM jobs WHERE id = ANY(%s)", (ids,))
    assert (last_claim - paused_at).total_seconds() < 1.0
    left = scalar(conn, "SELECT count(*) FROM jobs WHERE queue = 'q' AND state = 'queued'")
    assert left > 0  # it was paused with work to do

    admin.set_paused(conn, "q", False)
    wait_until(lambda: all_finished(conn), timeout=60, what="the queue to drain once resumed")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'") == 0


def test_the_paused_gauge_shows_a_pause_and_a_resume(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    port = free_port()
    env = {"JOBFLEET_QUEUE_STATS_SECONDS": "0.2"}
    fleet("a", "--workers", "1", "--metrics-port", str(port), env=env)  # alone: it leads
    admin.set_paused(conn, "q", True)
    wait_until(
        lambda: 'jobfleet_queue_paused{queue="q"} 1.0' in scrape_metrics(port), what="1 paused"
    )
    admin.set_paused(conn, "q", False)
    wait_until(
        lambda: 'jobfleet_queue_paused{queue="q"} 0.0' in scrape_metrics(port), what="0 resumed"
    )


def test_a_burst_node_leaves_a_paused_queue_alone_and_exits(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    admin.set_paused(conn, "held", True)
    held = jobfleet.enqueue(conn, "echo", queue="held")
    free = jobfleet.enqueue(conn, "echo")
    cli.ok("supervisor", "--burst", "--workers", "1")
    states = dict(conn.execute("SELECT id, state FROM jobs").fetchall())
    assert states == {held: "queued", free: "succeeded"}
