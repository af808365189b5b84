"""Each API request runs in one transaction that begins with jobfleet's timeouts (SET LOCAL),
not under startup options: the same bounds on a direct connection as through a
transaction-mode pooler (tests/test_pgbouncer.py)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

import jobfleet
from jobfleet.db import bounded_transaction, connect, connection_options
from jobfleet.http.app import create_app
from jobfleet.settings import load_settings
from tests.conftest import scalar
from tests.http_support import bearer, make_key


def test_a_request_stuck_on_a_lock_is_ended_by_the_statement_timeout(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    headers = bearer(make_key(conn, "c", "enqueue,read,cancel"))
    job_id = jobfleet.enqueue(conn, "echo")
    app = create_app(db_url, load_settings(statement_timeout_seconds=1))
    with TestClient(app) as client, psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
        started = time.monotonic()
        stuck = client.delete(f"/jobs/{job_id}", headers=headers)  # its UPDATE waits
        waited = time.monotonic() - started
        holder.rollback()
        assert stuck.status_code == 503, stuck.text
        assert 1 <= waited < 10, waited
        # The next request on the same pool is not left in the failed transaction.
        assert client.delete(f"/jobs/{job_id}", headers=headers).json()["state"] == "cancelled"


def test_a_bounded_transaction_sets_the_timeouts_for_itself_alone(db_url: str) -> None:
    config = load_settings(statement_timeout_seconds=7)
    assert "options" not in connection_options(config, pooler_safe=True)
    with connect(db_url, autocommit=True, config=config, pooler_safe=True) as c:
        before = scalar(c, "SHOW statement_timeout")
        with bounded_transaction(c, config):
            assert scalar(c, "SHOW statement_timeout") == "7s"
            assert scalar(c, "SHOW idle_in_transaction_session_timeout") == "1min"
        assert scalar(c, "SHOW statement_timeout") == before  # SET LOCAL: gone at COMMIT
        assert c.prepare_threshold is None
