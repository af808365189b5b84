"""What the HTTP API tests share: keys and their headers (the `client` and `key` fixtures are
in conftest.py)."""

from __future__ import annotations

import urllib.request
from typing import Any

import psycopg

from jobfleet import apikeys


def make_key(conn: psycopg.Connection[Any], name: str, scopes: str, rate: str | None = None) -> str:
    return apikeys.create_key(
        conn, name, apikeys.parse_scopes(scopes), None if rate is None else apikeys.parse_rate(rate)
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_refused_naming(response: Any, field: str) -> None:
    """A 422 whose body names the field at fault and says what is wrong with it."""
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["message"]


def scrape_metrics(port: int) -> str:
    """A node's /metrics text, or "" while it does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""
