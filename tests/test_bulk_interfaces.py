"""Bulk maintenance from the command line (`jobs cancel --type`, `dlq retry --type`) and over
HTTP (`POST /jobs:cancel`, `POST /dlq:retry`): what they print and answer, and who may."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from fastapi.testclient import TestClient

import jobfleet
from tests.conftest import Cli, scalar
from tests.http_support import assert_refused_naming, bearer, make_key
from tests.test_admin import make_dead

ERRORS = {"400", "401", "403", "413", "422", "429", "500", "503"}


def count(conn: psycopg.Connection[Any], state: str, type: str) -> int:
    query = "SELECT count(*) FROM jobs WHERE state = %s AND type = %s"
    return int(scalar(conn, query, (state, type)))


def test_jobs_cancel_by_type_prints_the_count_with_progress_on_stderr(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    jobfleet.enqueue_many(conn, "echo", list(range(2500)))
    jobfleet.enqueue_many(conn, "echo", list(range(3)), queue="keep")
    jobfleet.enqueue_many(conn, "noop", list(range(4)))
    done = cli("jobs", "cancel", "--type", "echo", "--queue", "default")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cancelled: 2500 jobs\n"
    assert "jobfleet: 1000 cancelled so far" in done.stderr
    assert "jobfleet: 2000 cancelled so far" in done.stderr
    assert json.loads(cli.ok("jobs", "cancel", "--type", "echo", "--json")) == {"changed": 3}
    assert cli.ok("jobs", "cancel", "--queue", "default") == "cancelled: 4 jobs\n"
    assert count(conn, "cancelled", "echo") == 2503


def test_jobs_cancel_needs_a_valid_filter(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    jobfleet.enqueue(conn, "echo")
    for args, reason in (
        ((), "give --type, --queue or both"),
        (("--type", "a b"), "type 'a b' is not valid"),
        (("--queue", ""), "queue '' is not valid"),
    ):
        refused = cli("jobs", "cancel", *args)
        assert refused.returncode == 2, refused
        assert reason in refused.stderr and refused.stdout == ""
    assert count(conn, "queued", "echo") == 1


def test_dlq_retry_by_type(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    make_dead(conn, 3, type="fail")
    make_dead(conn, 2, type="flaky")
    assert cli.ok("dlq", "retry", "--type", "fail") == "queued again: 3 jobs\n"
    assert json.loads(cli.ok("dlq", "retry", "--type", "flaky", "--json")) == {"changed": 2}
    assert json.loads(cli.ok("dlq", "retry", "--all", "--json")) == {"changed": 0}
    assert count(conn, "queued", "fail") == 3 and count(conn, "queued", "flaky") == 2
    make_dead(conn, 2, type="echo")
    make_dead(conn, 1, type="fail")
    assert json.loads(cli.ok("dlq", "retry", "--all", "--json")) == {"changed": 3}
    assert count(conn, "queued", "echo") == 2 and count(conn, "queued", "fail") == 4
    both = cli("dlq", "retry", "1", "--type", "fail")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = cli("dlq", "retry", "--type", "x\x01")
    assert bad.returncode == 2 and "type" in bad.stderr


def assert_guarded(
    client: TestClient,
    path: str,
    good: dict[str, str],
    scoped: dict[str, str],
    unscoped: dict[str, str],
    refused: list[tuple[dict[str, str], str]],
) -> None:
    """`path` answers 401 without a key, 403 with a key that lacks its scope, and 422 naming
    the field for each of the `refused` bodies (none of which changes anything)."""
    assert client.post(path, json=good).status_code == 401
    assert client.post(path, json=good, headers=unscoped).status_code == 403
    for body, field in refused:
        assert_refused_naming(client.post(path, json=body, headers=scoped), field)


def test_http_cancel_by_filter_with_the_cancel_scope(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    jobfleet.enqueue_many(conn, "echo", list(range(1500)))
    jobfleet.enqueue_many(conn, "noop", list(range(5)), queue="q")
    reader = bearer(make_key(conn, "reader", "read"))
    refused = [
        ({}, "body.type"),
        ({"type": "a b"}, "body.type"),
        ({"queue": "x\x00"}, "body.queue"),
        ({"state": "x"}, "body.state"),
    ]
    assert_guarded(client, "/jobs:cancel", {"type": "echo"}, key, reader, refused)
    assert count(conn, "queued", "echo") == 1500

    done = client.post("/jobs:cancel", json={"type": "echo"}, headers=key)
    assert (done.status_code, done.json()) == (200, {"changed": 1500})
    again = client.post("/jobs:cancel", json={"type": "noop", "queue": "q"}, headers=key)
    assert (again.status_code, again.json()) == (200, {"changed": 5})
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'queued'") == 0


def test_http_dlq_retry_by_type_needs_admin(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    make_dead(conn, 3, type="fail")
    admin = bearer(make_key(conn, "admin", "admin"))
    refused = [({}, "body.type"), ({"type": "-x"}, "body.type"), ({"queue": "q"}, "body.type")]
    assert_guarded(client, "/dlq:retry", {"type": "fail"}, admin, key, refused)
    assert count(conn, "dead", "fail") == 3
    done = client.post("/dlq:retry", json={"type": "fail"}, headers=admin)
    assert (done.status_code, done.json()) == (200, {"changed": 3})
    assert count(conn, "queued", "fail") == 3


def test_the_openapi_document_lists_the_bulk_statuses(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/jobs:cancel", "/dlq:retry"):
        documented = paths[path]["post"]["responses"]
        assert set(documented) == {"200", *ERRORS}, path
        ok = documented["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/Changed"}
        for status in ERRORS:
            schema = documented[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
