"""Rows holding what Python cannot represent (written by hand, or before jobfleet refused such
values) never break reads for everyone: `jobs list`, `jobs show`, GET /jobs and GET /jobs/{id}
show them as PostgreSQL's text or a note."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from fastapi.testclient import TestClient

import jobfleet
from jobfleet.tolerant import UNREADABLE_JSON
from tests.conftest import Cli


def _poison(conn: psycopg.Connection[Any]) -> dict[str, int]:
    ids = {name: jobfleet.enqueue(conn, "echo", {"n": name}) for name in ("inf", "ninf", "far")}
    ids |= {name: jobfleet.enqueue(conn, "echo") for name in ("deep", "digits")}
    conn.execute("UPDATE jobs SET run_at = 'infinity' WHERE id = %s", (ids["inf"],))
    conn.execute("UPDATE jobs SET created_at = '-infinity' WHERE id = %s", (ids["ninf"],))
    conn.execute("UPDATE jobs SET run_at = '294276-01-01 00:00Z' WHERE id = %s", (ids["far"],))
    deep = "[" * 1000 + "]" * 1000
    conn.execute("UPDATE jobs SET payload = %s::jsonb WHERE id = %s", (deep, ids["deep"]))
    digits = "1" * 5000
    conn.execute("UPDATE jobs SET payload = %s::jsonb WHERE id = %s", (digits, ids["digits"]))
    return ids


def test_the_cli_reads_rows_python_cannot_represent(
    conn: psycopg.Connection[Any], cli: Cli
) -> None:
    ids = _poison(conn)
    listed = {job["id"]: job for job in cli.json("jobs", "list")}
    assert set(listed) == set(ids.values())
    assert listed[ids["inf"]]["run_at"] == "infinity"
    assert cli.ok("jobs", "list").count("\n") >= len(ids)
    shown = json.loads(cli.ok("jobs", "show", str(ids["ninf"]), "--json"))
    assert shown["created_at"] == "-infinity"
    assert json.loads(cli.ok("jobs", "show", str(ids["far"]), "--json"))["run_at"].startswith(
        "294276-01-01"
    )
    for name in ("deep", "digits"):
        payload = json.loads(cli.ok("jobs", "show", str(ids[name]), "--json"))["payload"]
        assert payload.startswith(UNREADABLE_JSON.split("{")[0]), payload
        assert "Traceback" not in cli("jobs", "show", str(ids[name])).stderr
    cli.ok("status")


def test_the_http_api_reads_rows_python_cannot_represent(
    conn: psycopg.Connection[Any], client: TestClient, key: dict[str, str]
) -> None:
    ids = _poison(conn)
    page = client.get("/jobs", headers=key)
    assert page.status_code == 200, page.text
    assert {job["id"] for job in page.json()["jobs"]} == set(ids.values())
    for job_id in ids.values():
        one = client.get(f"/jobs/{job_id}", headers=key)
        assert one.status_code == 200, (job_id, one.text)
    assert client.get(f"/jobs/{ids['inf']}", headers=key).json()["run_at"] == "infinity"
