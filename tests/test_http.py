"""The HTTP API in process (FastAPI's test client) against the real database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobfleet import apikeys
from jobfleet.jobs import AttemptResult
from jobfleet.settings import load_settings
from jobfleet.store import claim, record
from jobfleet.supervisor.http.app import create_app
from tests.conftest import Cli, scalar
from tests.tcp_proxy import Proxy, proxied_url

ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "422", "429", "500", "503"}


def make_key(conn: psycopg.Connection[Any], name: str, scopes: str, rate: str | None = None) -> str:
    return apikeys.create_key(
        conn, name, apikeys.parse_scopes(scopes), None if rate is None else apikeys.parse_rate(rate)
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(conn: psycopg.Connection[Any], db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url, load_settings(max_request_bytes=64 * 1024))) as c:
        yield c


@pytest.fixture
def key(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return bearer(make_key(conn, "all", "enqueue,read,cancel"))


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
    response = client.post("/jobs", json=body, headers=key)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["message"]
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
    assert queues == [
        {"queue": "q1", "counts": {"queued": 2}},
        {"queue": "q2", "counts": {"queued": 1}},
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
    assert 0 < refused.json()["retry_after"] <= 60
    assert "over its rate of 1/min" in refused.json()["message"]


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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "echo", "delay": 1e12}, "body.delay"),
        ({"type": "echo", "delay": 1e15}, "body.delay"),
        ({"type": "echo", "delay": 1e300}, "body.delay"),
        ({"type": "echo", "run_at": "9999-12-31T23:59:59-05:00"}, "body.run_at"),
        ({"type": "echo", "timeout": 1e300}, "body.timeout"),
        ({"type": "echo", "backoff": "exponential:1e308"}, "body.backoff"),
        ({"type": "echo", "idempotency_key": "nul\u0000key"}, "body.idempotency_key"),
    ],
)
def test_options_beyond_what_can_be_stored_are_422_and_nothing_is_written(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any], body: Any, field: str
) -> None:
    response = client.post("/jobs", json=body, headers=key)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    batch = client.post("/jobs:batch", json={"jobs": [{"type": "echo"}, body]}, headers=key)
    assert batch.status_code == 422 and batch.json()["field"].startswith("body.jobs.1")
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0
    assert client.get("/jobs", headers=key).status_code == 200


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"type": "echo", "payload": "\\udcff"}', "body.payload"),
        (b'{"type": "echo", "payload": {"\\ud800": 1}}', "body.payload"),
        (b'{"type": "echo", "payload": ["a\\\\", "\\u0000"]}', "body.payload"),
        (b'{"type": "echo", "idempotency_key": "k\\udcff"}', "body.idempotency_key"),
        (b'{"type": "echo\\udcff"}', "body.type"),
        (b'{"type": "echo", "queue": "q\\udcff"}', "body.queue"),
    ],
)
def test_text_postgresql_cannot_store_is_422_naming_the_field(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any], raw: bytes, field: str
) -> None:
    headers = {**key, "Content-Type": "application/json"}
    response = client.post("/jobs", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "codec" not in response.json()["message"]
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_a_backslash_u0000_text_is_a_payload_like_any_other(
    client: TestClient, key: dict[str, str]
) -> None:
    payload = {"windows path": "C:\\u0000dir", "escaped": "\\\\u0000"}
    created = client.post("/jobs", json={"type": "echo", "payload": payload}, headers=key)
    assert created.status_code == 201, created.text
    assert client.get(f"/jobs/{created.json()['id']}", headers=key).json()["payload"] == payload


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", f"/jobs?after={2**63}", "query.after"),
        ("GET", f"/jobs?limit={2**63}", "query.limit"),
        ("GET", f"/jobs/{2**63}", "path.job_id"),
        ("DELETE", f"/jobs/{2**63}", "path.job_id"),
        ("GET", f"/jobs/{10**30}", "path.job_id"),
        ("GET", "/jobs/0", "path.job_id"),
    ],
)
def test_integers_beyond_a_job_id_are_422_naming_the_parameter(
    client: TestClient, key: dict[str, str], method: str, path: str, field: str
) -> None:
    response = client.request(method, path, headers=key)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    largest = client.get(f"/jobs/{2**63 - 1}", headers=key)
    assert largest.status_code == 404
    assert client.get(f"/jobs?after={2**63 - 1}", headers=key).json()["jobs"] == []


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_the_deepest_payload_accepted_reads_back_everywhere(
    client: TestClient, key: dict[str, str], conn: psycopg.Connection[Any], cli: Cli
) -> None:
    from jobfleet.options import MAX_JSON_DEPTH

    deepest = nested(MAX_JSON_DEPTH)
    for too_deep in (MAX_JSON_DEPTH + 1, 300):
        refused = client.post(
            "/jobs", json={"type": "echo", "payload": nested(too_deep)}, headers=key
        )
        assert refused.status_code == 422 and refused.json()["field"] == "body.payload"
        assert f"deeper than {MAX_JSON_DEPTH} levels" in refused.json()["message"]
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0

    created = client.post("/jobs", json={"type": "echo", "payload": deepest}, headers=key)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    cli.ok("supervisor", "--burst", "--workers", "1")  # echo: the result is as deep
    job = client.get(f"/jobs/{job_id}", headers=key)
    assert job.status_code == 200, job.text
    assert job.json()["payload"] == deepest and job.json()["result"] == deepest
    assert [j["id"] for j in client.get("/jobs", headers=key).json()["jobs"]] == [job_id]
    shown = cli.json("jobs", "show", str(job_id))
    assert (shown["payload"], shown["result"], shown["state"]) == (deepest, deepest, "succeeded")
    assert '"leaf"' in cli.ok("jobs", "show", str(job_id))
    assert [j["id"] for j in cli.json("jobs", "list")] == [job_id]
    assert str(job_id) in cli.ok("jobs", "list")


def metric_series(client: TestClient) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every (metric, label set) /metrics shows, histogram buckets folded into their series."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return {
        (family.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le")))
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")  # a timestamp per series, not a series
        for sample in family.samples
    }


def test_made_up_methods_and_paths_add_a_fixed_handful_of_series(
    client: TestClient, key: dict[str, str]
) -> None:
    import random
    import string

    rng = random.Random(7)

    def token() -> str:
        return "".join(rng.choices(string.ascii_uppercase, k=8))

    def unauthenticated_noise() -> None:
        for i in range(200):
            method = token() if i % 4 else "GET"
            path = rng.choice([f"/{token().lower()}/{i}", f"/jobs/{i}", "/jobs", f"/jobs?x={i}"])
            response = client.request(method, path)
            assert response.status_code in (401, 404, 405, 429), (method, path, response)

    before = metric_series(client)
    unauthenticated_noise()
    added = metric_series(client) - before
    # At most (GET, other) x (/jobs, /jobs/{job_id}, unmatched, /metrics): a duration
    # histogram each and a request counter per status (401, then 429 once this address has
    # failed too often), and the rate-limited counter of requests without a valid key.
    assert len(added) <= 20, "\n".join(map(str, sorted(added)))
    labels = [dict(series) for _, series in added if "method" in dict(series)]
    assert {series["method"] for series in labels} <= {"GET", "other"}
    assert {series["route"] for series in labels} <= {
        "/jobs",
        "/jobs/{job_id}",
        "unmatched",
        "/metrics",
    }
    seen = metric_series(client)
    unauthenticated_noise()  # 200 more made-up methods and paths: nothing new
    assert metric_series(client) == seen


def test_enqueue_counts_stop_growing_label_sets_past_a_cap(
    client: TestClient, key: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobfleet import metrics

    monkeypatch.setattr(metrics, "ENQUEUED_LABEL_SETS_MAX", len(metrics._enqueued_labels) + 2)
    before = metric_series(client)
    jobs = [{"type": f"made-up-{i}", "queue": f"q{i}"} for i in range(10)]
    assert client.post("/jobs:batch", json={"jobs": jobs}, headers=key).status_code == 201
    added = {s for s in metric_series(client) - before if s[0] == "jobfleet_jobs_enqueued"}
    assert {dict(labels)["type"] for _, labels in added} == {"made-up-0", "made-up-1", "other"}


def test_requests_without_a_well_formed_key_are_401_without_the_database(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    proxy = Proxy(db_url)
    proxy.start()
    try:
        app = create_app(proxied_url(db_url, proxy.port), load_settings(connect_timeout_seconds=1))
        with TestClient(app) as client:
            proxy.cut()  # the database is gone: only what needs it can fail
            assert client.get("/jobs").status_code == 401
            assert client.get("/jobs", headers=bearer("not-a-key")).status_code == 401
            assert client.delete("/jobs/1", headers=bearer("jf_short")).status_code == 401
    finally:
        proxy.cut()


def test_an_address_that_keeps_failing_to_sign_in_gets_429_before_any_lookup(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    from jobfleet.supervisor.http.limits import AddressLimit

    good = bearer(make_key(conn, "good", "read"))
    unknown = bearer("jf_" + "0" * 16 + "_" + "A" * 43)
    app = create_app(db_url, load_settings())
    with (
        TestClient(app, client=("203.0.113.7", 40000)) as noisy,
        TestClient(app, client=("198.51.100.1", 40000)) as other,
    ):
        burst = int(AddressLimit().burst)
        statuses = [noisy.get("/jobs", headers=unknown).status_code for _ in range(burst)]
        assert statuses == [401] * burst
        refused = noisy.get("/jobs", headers=unknown)
        assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
        assert refused.headers["Retry-After"] == "1"
        assert "without a valid API key from this address" in refused.json()["message"]
        # The whole address waits, a good key too; other addresses do not.
        assert noisy.get("/jobs", headers=good).status_code == 429
        assert noisy.post("/jobs", json={"type": "echo"}).status_code == 429
        assert other.get("/jobs", headers=good).status_code == 200
        assert other.get("/jobs").status_code == 401
        assert noisy.get("/healthz").status_code == 200  # no key needed, no limit
        text = noisy.get("/metrics").text
        assert 'jobfleet_rate_limited_total{key="(no valid key)"}' in text
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0
