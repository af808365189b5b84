"""`jobfleet apikey`: keys are shown once, stored hashed, listed without secrets, revoked."""

from __future__ import annotations

from typing import Any

import psycopg

from jobfleet.apikeys import verify_key
from tests.conftest import Cli, scalar


def test_create_prints_the_key_once_and_stores_only_a_hash(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    out = cli.ok("apikey", "create", "--name", "ci", "--scopes", "read,enqueue", "--rate", "30/min")
    key = out.strip().splitlines()[-1]
    assert key.startswith("jf_") and "shown this once" in out
    stored = conn.execute("SELECT row_to_json(k)::text FROM api_keys k").fetchone()
    assert stored is not None and key.split("_", 2)[2] not in stored[0]
    found = verify_key(conn, key)
    assert found is not None and found.scopes == {"read", "enqueue"}
    assert found.rate_per_second == 0.5
    listed = cli.json("apikey", "list")
    assert [(k["name"], k["scopes"], k["revoked_at"]) for k in listed] == [
        ("ci", ["enqueue", "read"], None)
    ]
    assert key not in cli.ok("apikey", "list")


def test_revoke_stops_the_key(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    key = cli.ok("apikey", "create", "--name", "old", "--scopes", "read").strip().splitlines()[-1]
    assert cli.ok("apikey", "revoke", "old").strip() == "revoked API key 'old'"
    assert verify_key(conn, key) is None
    again = cli("apikey", "revoke", "old")
    assert again.returncode == 1 and "revoked already" in again.stderr
    unknown = cli("apikey", "revoke", "nobody")
    assert unknown.returncode == 1 and "no API key named 'nobody'" in unknown.stderr


def test_bad_input_is_refused_and_writes_nothing(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    scope = cli("apikey", "create", "--name", "x", "--scopes", "read,root")
    assert scope.returncode == 2 and "unknown scope 'root'" in scope.stderr
    rate = cli("apikey", "create", "--name", "x", "--scopes", "read", "--rate", "fast")
    assert rate.returncode == 2 and "100/s" in rate.stderr
    cli.ok("apikey", "create", "--name", "x", "--scopes", "read")
    twice = cli("apikey", "create", "--name", "x", "--scopes", "read")
    assert twice.returncode == 1 and "exists already" in twice.stderr
    assert scalar(conn, "SELECT count(*) FROM api_keys") == 1
