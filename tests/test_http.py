"""The HTTP API in process (FastAPI's test client) against the real database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobfleet import apikeys
from jobfleet.http.app import create_app
from jobfleet.jobs import AttemptResult
from jobfleet.settings import load_settings
from jobfleet.supervisor.store import claim, record
from tests.conftest import scalar
from tests.http_support import assert_refused_naming, bearer, make_key
from tests.tcp_proxy import Proxy, proxied_url

ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "422", "429", "500", "503"}


def test_post_creates_a_job_and_get_returns_it(client: TestClient, key: dict[str, str]) -> None:
    response = client.post(
        "/jobs", json={"type": "echo", "payload": {"n": 1}, "priority": 7}, headers=key
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["type"], job["state"], job["priority"], job["payload"]) == (
        "echo",
        "queued",
        7,
        {"n": 1},
    )
    fetched = client.get(f"/jobs/{job['id']}", headers=key)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"] and fetched.json()["attempts"] == []


def test_a_finished_job_shows_its_result_and_attempts(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"type": "echo"}, headers=key).json()["id"]
    (claimed,) = claim(conn, holder="n/1", types=["echo"], queues=None, limit=1, lease_seconds=30)
    record(conn, "n", [AttemptResult(claimed.id, claimed.attempt, "succeeded", '{"ok": true}')])
    job = client.get(f"/jobs/{job_id}", headers=key).json()
    assert job["state"] == "succeeded" and job["result"] == {"ok": True}
    assert [a["outcome"] for a in job["attempts"]] == ["succeeded"]


def test_a_repeated_idempotency_key_returns_the_same_job_with_200(
    client: TestClient, key: dict[str, str]
) -> None:
    body = {"type": "echo", "idempotency_key": "order-42"}
    first = client.post("/jobs", json=body, headers=key)
    second = client.post("/jobs", json=body, headers=key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
def test_no_key_or_a_bad_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/jobs", json={"type": "echo"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_the_key_is_checked_before_the_body(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    # Without a good key a client learns nothing about what its body should be.
    bad_body = {"type": "echo", "priority": "high", "colour": "red"}
    assert client.post("/jobs", json=bad_body).status_code == 401
    reader = bearer(make_key(conn, "reader", "read"))
    assert client.post("/jobs", json=bad_body, headers=reader).status_code == 403
    assert client.post("/jobs:batch", json={"jobs": "many"}).status_code == 401


def test_a_wrong_secret_and_a_revoked_key_are_401(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    good = make_key(conn, "soon-revoked", "read")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert client.get("/jobs", headers=bearer(forged)).status_code == 401
    assert client.get("/jobs", headers=bearer(good)).status_code == 200
    apikeys.revoke_key(conn, "soon-revoked")
    assert client.get("/jobs", headers=bearer(good)).status_code == 401


def test_a_key_without_the_scope_is_403_and_nothing_is_written(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    reader = bearer(make_key(conn, "reader", "read"))
    response = client.post("/jobs", json={"type": "echo"}, headers=reader)
    assert response.status_code == 403
    assert "'enqueue' scope" in response.json()["message"]
    assert client.delete("/jobs/1", headers=reader).status_code == 403
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "echo", "priority": 99999}, "body.priority"),
        ({"type": "echo", "colour": "red"}, "body.colour"),
        ({"payload": {}}, "body.type"),
        ({"type": "bad type!"}, "body.type"),
        ({"type": "echo", "queue": "no spaces"}, "body.queue"),
        ({"type": "echo", "run_at": "next tuesday"}, "body.run_at"),
        ({"type": "echo", "delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "body.run_at"),
        ({"type": "echo", "backoff": "sometimes"}, "body.backoff"),
        ({"type": "echo", "max_attempts": 0}, "body.max_attempts"),
        ({"type": "echo", "payload": {"blob": "x" * 40_000}, "timeout": -1}, "body.timeout"),
    ],
)
def test_a_bad_field_is_422_naming_it(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any], body: Any, field: str
) -> None:
    assert_refused_naming(client.post("/jobs", json=body, headers=key), field)
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_an_oversized_payload_is_422_and_an_oversized_body_413(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    config = load_settings(max_payload_bytes=1000, max_request_bytes=20_000)
    headers = bearer(make_key(conn, "big", "enqueue"))
    with TestClient(create_app(db_url, config)) as client:
        payload = client.post(
            "/jobs", json={"type": "echo", "payload": "x" * 2000}, headers=headers
        )
        assert payload.status_code == 422 and payload.json()["field"] == "body.payload"
        assert "over the limit" in payload.json()["message"]
        body = client.post("/jobs", json={"type": "echo", "payload": "x" * 30_000}, headers=headers)
        assert body.status_code == 413
        assert "JOBFLEET_MAX_REQUEST_BYTES" in body.json()["message"]
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_a_body_that_is_not_json_is_400(client: TestClient, key: dict[str, str]) -> None:
    response = client.post(
        "/jobs", content=b"{not json", headers={**key, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    # The README's words: another content type is a 422 on `body` saying which to send.
    form = client.post(
        "/jobs",
        content=b'{"type": "echo"}',
        headers={**key, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 422 and form.json()["field"] == "body"
    assert "Content-Type: application/json" in form.json()["message"]


def test_unknown_jobs_and_routes_are_404_as_json(client: TestClient, key: dict[str, str]) -> None:
    job = client.get("/jobs/999999", headers=key)
    assert job.status_code == 404 and job.json()["message"] == "job 999999 does not exist"
    route = client.get("/no/such/route")
    assert route.status_code == 404 and route.json()["error"] == "not_found"


def test_a_batch_is_one_transaction(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    good = {"type": "noop"}
    ok = client.post("/jobs:batch", json={"jobs": [good, good, good]}, headers=key)
    assert ok.status_code == 201
    assert len(ok.json()["ids"]) == 3 and ok.json()["created"] == [True] * 3
    bad = client.post(
        "/jobs:batch",
        json={"jobs": [good, {"type": "noop", "queue": "bad queue"}]},
        headers=key,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "body.jobs.1.queue"
    assert scalar(conn, "SELECT count(*) FROM jobs") == 3  # the bad batch left nothing


def test_listing_pages_with_after_and_filters(client: TestClient, key: dict[str, str]) -> None:
    ids = client.post(
        "/jobs:batch", json={"jobs": [{"type": "noop"}] * 5 + [{"type": "echo"}]}, headers=key
    ).json()["ids"]
    seen, after = [], None
    while True:
        params: dict[str, Any] = {"type": "noop", "limit": 2}
        if after is not None:
            params["after"] = after
        page = client.get("/jobs", params=params, headers=key).json()
        seen += [j["id"] for j in page["jobs"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(ids[:5], reverse=True)
    bad = client.get("/jobs", params={"state": "sleeping"}, headers=key)
    assert bad.status_code == 422 and bad.json()["field"] == "query.state"


def test_delete_cancels_a_queued_job_and_refuses_a_finished_one(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"type": "echo"}, headers=key).json()["id"]
    cancelled = client.delete(f"/jobs/{job_id}", headers=key)
    assert cancelled.status_code == 200 and cancelled.json() == {"id": job_id, "state": "cancelled"}
    again = client.delete(f"/jobs/{job_id}", headers=key)
    assert again.status_code == 409 and "already cancelled" in again.json()["message"]
    assert client.delete("/jobs/999999", headers=key).status_code == 404


def test_delete_of_a_running_job_is_202(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"type": "sleep"}, headers=key).json()["id"]
    claim(conn, holder="n/1", types=["sleep"], queues=None, limit=1, lease_seconds=30)
    response = client.delete(f"/jobs/{job_id}", headers=key)
    assert response.status_code == 202 and response.json()["state"] == "running"
    assert scalar(conn, "SELECT cancel_requested FROM jobs WHERE id = %s", [job_id]) is True


def test_queues_counts_by_state(client: TestClient, key: dict[str, str]) -> None:
    client.post("/jobs:batch", json={"jobs": [{"type": "noop", "queue": "q1"}] * 2}, headers=key)
    client.post("/jobs", json={"type": "noop", "queue": "q2"}, headers=key)
    queues = client.get("/queues", headers=key).json()["queues"]
    zero = {"queued": 0, "running": 0, "succeeded": 0, "cancelled": 0, "dead": 0}
    assert queues == [
        {"queue": "q1", "counts": {**zero, "queued": 2}, "paused": False},
        {"queue": "q2", "counts": {**zero, "queued": 1}, "paused": False},
    ]


def test_over_the_rate_is_429_with_retry_after(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    # One request a minute: the first is allowed, the next ones (well within the minute) not,
    # however slow the machine.
    limited = bearer(make_key(conn, "slow", "read", rate="1/min"))
    statuses = [client.get("/queues", headers=limited) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 429, 429]
    refused = statuses[1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["retry_after"] == int(refused.headers["Retry-After"])  # one figure
    assert "over its rate of 1/min" in refused.json()["message"]


def test_a_rate_of_n_per_second_lets_n_back_to_back_requests_through(
    client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    limited = bearer(make_key(conn, "twenty", "read", rate="20/s"))
    statuses = [client.get("/queues", headers=limited).status_code for _ in range(20)]
    assert statuses == [200] * 20  # (the 1/min key above shows the refusal)


def test_health_readiness_and_metrics(client: TestClient, key: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["schema_version"] >= 3
    client.post("/jobs", json={"type": "echo", "queue": "metered"}, headers=key)
    text = client.get("/metrics").text
    assert 'jobfleet_jobs_enqueued_total{queue="metered",type="echo"}' in text
    assert 'jobfleet_http_requests_total{method="POST",route="/jobs",status="201"}' in text


def test_a_database_that_goes_away_gives_503_and_readyz_recovers(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    headers = bearer(make_key(conn, "k", "enqueue"))
    proxy = Proxy(db_url)
    proxy.start()
    config = load_settings(connect_timeout_seconds=1)
    try:
        with TestClient(create_app(proxied_url(db_url, proxy.port), config)) as client:
            assert client.get("/readyz").status_code == 200
            proxy.cut()
            down = client.get("/readyz")
            assert down.status_code == 503 and down.json()["error"] == "database_unavailable"
            assert "Retry-After" in down.headers
            post = client.post("/jobs", json={"type": "echo"}, headers=headers)
            assert post.status_code == 503 and "nothing was changed" in post.json()["message"]
            proxy.start()  # the same port again
            assert client.get("/readyz").status_code == 200
            assert client.post("/jobs", json={"type": "echo"}, headers=headers).status_code == 201
    finally:
        proxy.cut()
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def test_the_openapi_document_lists_every_status_with_the_error_body(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any]
) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/jobs", "post"): {"200", "201", "400", "401", "403", "413", "422", "429", "500", "503"},
        ("/jobs:batch", "post"): {"201", "400", "401", "403", "413", "422", "429", "500", "503"},
        ("/jobs/{job_id}", "get"): {"200", "401", "403", "404", "422", "429", "500", "503"},
        ("/jobs/{job_id}", "delete"): {
            "200",
            "202",
            "401",
            "403",
            "404",
            "409",
            "422",
            "429",
            "500",
            "503",
        },
        ("/jobs", "get"): {"200", "401", "403", "422", "429", "500", "503"},
        ("/queues", "get"): {"200", "401", "403", "429", "500", "503"},
        ("/readyz", "get"): {"200", "500", "503"},
    }
    for (path, method), statuses in expected.items():
        documented = paths[path][method]["responses"]
        assert set(documented) == statuses, (path, method)
        for status in statuses & ERROR_STATUSES:
            schema = documented[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    for path in ("/jobs", "/jobs:batch"):  # a web client's trace context, optional
        headers = [p for p in paths[path]["post"]["parameters"] if p["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [
            ("traceparent", False),
            ("tracestate", False),
        ]

    # And what the API answers is what it documents: statuses and bodies.
    reader = bearer(make_key(conn, "reader", "read"))
    calls = [
        ("post", "/jobs", {}, {"type": "echo"}),
        ("post", "/jobs", key, {"type": "echo", "idempotency_key": "k"}),
        ("post", "/jobs", key, {"type": "echo", "idempotency_key": "k"}),
        ("post", "/jobs", reader, {"type": "echo"}),
        ("post", "/jobs", key, {"type": "echo", "priority": -1}),
        ("post", "/jobs:batch", key, {"jobs": []}),
        ("get", "/jobs/1", key, None),
        ("get", "/jobs/424242", key, None),
        ("get", "/jobs", key, None),
        ("delete", "/jobs/424242", key, None),
        ("delete", "/jobs/1", key, None),
        ("delete", "/jobs/1", key, None),
        ("get", "/queues", {}, None),
    ]
    for method, path, headers, body in calls:
        response = client.request(method.upper(), path, headers=headers, json=body)
        template = "/jobs/{job_id}" if path.startswith("/jobs/") else path
        assert str(response.status_code) in paths[template][method]["responses"], (
            method,
            path,
            response.status_code,
        )
        if str(response.status_code) in ERROR_STATUSES:
            assert set(response.json()) >= {"error", "message"}


def test_docs_and_redoc_are_served_with_every_asset_local(client: TestClient) -> None:
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html.text), html.text
        assets = re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", html.text)
        assert any(a.endswith(".js") for a in assets), html.text
        for asset in assets:
            served = client.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
        assert "/openapi.json" in html.text
