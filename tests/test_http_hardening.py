"""The HTTP API refuses what cannot be stored or would grow without bound (the hardening):
values PostgreSQL cannot hold, text it cannot store, integers past a job id, nesting past
what readers take, made-up label values, and anonymous callers who keep trying."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobfleet.http.app import create_app
from jobfleet.settings import load_settings
from tests.conftest import Cli, scalar
from tests.http_support import assert_refused_naming, bearer, make_key
from tests.tcp_proxy import Proxy, proxied_url


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
    assert_refused_naming(client.post("/jobs", json=body, headers=key), field)
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
    from jobfleet.http.limits import AddressLimit

    good = bearer(make_key(conn, "good", "read"))
    unknown = bearer("jf_" + "0" * 16 + "_" + "A" * 43)
    app = create_app(db_url, load_settings())
    with (
        TestClient(app, client=("203.0.113.7", 40000)) as noisy,
        TestClient(app, client=("198.51.100.1", 40000)) as other,
    ):
        limit = AddressLimit()
        burst = int(limit.burst)
        began = time.monotonic()
        statuses = [noisy.get("/jobs", headers=unknown).status_code for _ in range(burst)]
        assert statuses == [401] * burst
        # The bucket refills while the requests are made (one token a second): on a slow
        # machine a few more fail to sign in before the address is refused.
        refused, refilled = noisy.get("/jobs", headers=unknown), 0
        while refused.status_code == 401:
            refilled += 1
            assert refilled <= (time.monotonic() - began) * limit.per_second, "never refused"
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
