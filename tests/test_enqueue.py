"""Enqueue in the caller's transaction, with checked options, singly and in bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import jobfleet
from tests.conftest import scalar


def job_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
    row = cur.fetchone()
    assert row is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def test_enqueue_stores_the_job_with_defaults(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo", {"x": [1, 2]})
    job = job_row(conn, job_id)
    assert job["type"] == "echo"
    assert job["state"] == "queued"
    assert job["queue"] == "default"
    assert job["priority"] == 0
    assert job["max_attempts"] == 5
    assert job["attempt"] == 0
    assert job["payload"] == {"x": [1, 2]}
    assert job["run_at"] <= scalar(conn, "SELECT now()")


def test_enqueue_options_are_stored(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(
        conn,
        "resize",
        None,
        queue="images",
        priority=7,
        delay=60,
        max_attempts=2,
        timeout=12.5,
        backoff="linear:3",
        idempotency_key="k1",
    )
    job = job_row(conn, job_id)
    assert (job["queue"], job["priority"], job["max_attempts"]) == ("images", 7, 2)
    assert (job["timeout_seconds"], job["backoff"], job["backoff_seconds"]) == (12.5, "linear", 3)
    assert job["idempotency_key"] == "k1"
    assert job["payload"] is None
    delay = job["run_at"] - scalar(conn, "SELECT now()")
    assert timedelta(seconds=55) < delay <= timedelta(seconds=60)


def test_run_at_naive_is_utc(conn: psycopg.Connection[Any]) -> None:
    job_id = jobfleet.enqueue(conn, "echo", run_at="2031-05-01T10:00:00")
    assert job_row(conn, job_id)["run_at"] == datetime(2031, 5, 1, 10, tzinfo=UTC)


def test_enqueue_commits_with_the_callers_transaction(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as app:
        kept = jobfleet.enqueue(app, "echo", {"n": 1})
        app.commit()
        lost = jobfleet.enqueue(app, "echo", {"n": 2})
        assert scalar(conn, "SELECT count(*) FROM jobs WHERE id = %s", (lost,)) == 0
        app.rollback()
    assert scalar(conn, "SELECT array_agg(id) FROM jobs") == [kept]


def test_enqueue_never_commits(db_url: str, conn: psycopg.Connection[Any]) -> None:
    with psycopg.connect(db_url) as app:
        jobfleet.enqueue(app, "echo")
        jobfleet.enqueue_many(app, "echo", [1, 2])
        assert app.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert scalar(conn, "SELECT count(*) FROM jobs") == 0
        app.rollback()
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"priority": -1}, "priority"),
        ({"priority": 40000}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"delay": -5}, "delay"),
        ({"delay": 1, "run_at": "2030-01-01T00:00:00Z"}, "delay and run_at"),
        ({"run_at": "next tuesday"}, "run_at"),
        ({"timeout": 0}, "timeout"),
        ({"queue": ""}, "queue"),
        ({"queue": "a b"}, "queue"),
        ({"backoff": "random"}, "backoff"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_options_raise_naming_the_option_and_write_nothing(
    conn: psycopg.Connection[Any], options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        jobfleet.enqueue(conn, "echo", {}, **options)
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"when": datetime.now()}, "not JSON-serialisable"),
        (float("nan"), "not JSON-serialisable"),
        ("x" * (1024 * 1024 + 1), r"1048579 bytes \(1.0 MiB\), over the limit of 1048576 bytes"),
        ("nul\x00byte", "NUL"),
    ],
)
def test_bad_payloads_are_refused(
    conn: psycopg.Connection[Any], payload: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        jobfleet.enqueue(conn, "echo", payload)
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_bad_type_names_are_refused(conn: psycopg.Connection[Any]) -> None:
    for bad in ("", "has space", "-dash", "x" * 129):
        with pytest.raises(ValueError, match="type"):
            jobfleet.enqueue(conn, bad)
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_type_defaults_fill_in_left_out_options(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO job_types (type, queue, priority, max_attempts, timeout_seconds, backoff)"
        " VALUES ('report', 'reports', 5, 3, 60, 'fixed')"
    )
    defaulted = job_row(conn, jobfleet.enqueue(conn, "report"))
    assert (defaulted["queue"], defaulted["priority"], defaulted["max_attempts"]) == (
        "reports",
        5,
        3,
    )
    assert (defaulted["timeout_seconds"], defaulted["backoff"]) == (60, "fixed")
    own = job_row(conn, jobfleet.enqueue(conn, "report", queue="urgent", max_attempts=9))
    assert (own["queue"], own["priority"], own["max_attempts"]) == ("urgent", 5, 9)
    bulk = jobfleet.enqueue_many(conn, "report", [1, 2], priority=1)
    assert [job_row(conn, i)["priority"] for i in bulk] == [1, 1]
    assert [job_row(conn, i)["queue"] for i in bulk] == ["reports", "reports"]


def test_enqueue_many_returns_ids_in_payload_order(conn: psycopg.Connection[Any]) -> None:
    payloads = [{"n": i} for i in range(500)]
    ids = jobfleet.enqueue_many(conn, "echo", payloads, queue="bulk", delay=30)
    assert len(ids) == 500 and len(set(ids)) == 500
    rows = dict(conn.execute("SELECT id, payload FROM jobs").fetchall())
    assert [rows[i] for i in ids] == payloads
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE queue = 'bulk' AND run_at > now()") == 500
    assert jobfleet.enqueue_many(conn, "echo", []) == []


def test_enqueue_many_checks_every_payload_first(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError, match="payload #3"):
        jobfleet.enqueue_many(conn, "echo", [1, 2, {1, 2}])
    with pytest.raises(ValueError, match="idempotency_key"):
        jobfleet.enqueue_many(conn, "echo", [1], idempotency_key="k")
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_enqueue_many_keeps_every_character_of_every_payload(
    conn: psycopg.Connection[Any],
) -> None:
    tricky = [
        {"path": "C:\\temp\\new", "tab": "a\tb", "lines": "one\ntwo\r\n", "quote": 'say "hi"'},
        "back\\\\slashes \\N and \\t literally",
        {"unicode": "żółć ☃ \u2028 𝄞", "empty": "", "nested": [1, 2.5, None, True, {"k": []}]},
        None,
        12345678901234,
    ]
    ids = jobfleet.enqueue_many(conn, "echo", tricky, queue="q-1", priority=3, delay=5)
    stored = dict(conn.execute("SELECT id, payload FROM jobs").fetchall())
    assert [stored[i] for i in ids] == tricky
    rows = conn.execute("SELECT DISTINCT queue, priority, run_at > now() FROM jobs").fetchall()
    assert rows == [("q-1", 3, True)]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


BAD_OPTIONS = [
    {"delay": 1e12},
    {"delay": 1e15},
    {"delay": 1e300},
    {"run_at": "9999-12-31T23:59:59-05:00"},
    {"timeout": 1e300},
    {"backoff": "exponential:1e308"},
    {"idempotency_key": "key\x00with a NUL"},
    {"idempotency_key": "key with a lone surrogate \udcff"},
    {"queue": "default\n"},
]


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_options_beyond_what_can_be_stored_raise_and_leave_the_callers_transaction_alone(
    db_url: str, conn: psycopg.Connection[Any], options: dict[str, Any]
) -> None:
    (named,) = options
    with psycopg.connect(db_url) as app:
        own = jobfleet.enqueue(app, "echo", {"mine": True})
        with pytest.raises(ValueError, match=named):
            jobfleet.enqueue(app, "echo", {}, **options)
        if named != "idempotency_key":
            with pytest.raises(ValueError, match=named):
                jobfleet.enqueue_many(app, "echo", [1, 2], **options)
        app.commit()  # the caller's own work survives the refusal
    assert scalar(conn, "SELECT array_agg(id) FROM jobs") == [own]


@pytest.mark.parametrize(
    "payload",
    [
        "lone surrogate \udcff",
        {"key \ud800": 1},
        {"nested": ["NUL \x00 in a list"]},
        {"NUL key \x00": 1},
        nested(65),
        nested(5000),
    ],
)
def test_payloads_postgresql_or_readers_cannot_take_are_refused_before_writing(
    db_url: str, conn: psycopg.Connection[Any], payload: Any
) -> None:
    with psycopg.connect(db_url) as app:
        own = jobfleet.enqueue(app, "echo", {"mine": True})
        with pytest.raises(ValueError, match="payload"):
            jobfleet.enqueue(app, "echo", payload)
        with pytest.raises(ValueError, match="payload #2"):
            jobfleet.enqueue_many(app, "echo", [1, payload])
        app.commit()
    assert scalar(conn, "SELECT array_agg(id) FROM jobs") == [own]


def test_text_that_only_looks_like_a_nul_is_stored_as_is(conn: psycopg.Connection[Any]) -> None:
    payload = {"path": "C:\\u0000dir", "\\u0000 key": "\\\\u0000", "deep": nested(63)}
    one = jobfleet.enqueue(conn, "echo", payload)
    many = jobfleet.enqueue_many(conn, "echo", [payload, "\\u0000"])
    stored = dict(conn.execute("SELECT id, payload FROM jobs").fetchall())
    assert [stored[i] for i in (one, *many)] == [payload, payload, "\\u0000"]


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/New_York"])
def test_the_extreme_times_accepted_read_back_in_any_time_zone(
    conn: psycopg.Connection[Any], zone: str
) -> None:
    from jobfleet import admin
    from jobfleet.options import DELAY_MAX_SECONDS

    latest = jobfleet.enqueue(conn, "echo", run_at="9998-12-31T23:59:59.999999Z")
    earliest = jobfleet.enqueue(conn, "echo", run_at="0002-01-01T00:00:00Z")
    far = jobfleet.enqueue(conn, "echo", delay=DELAY_MAX_SECONDS, timeout=365 * 86400)
    bulk = jobfleet.enqueue_many(conn, "echo", [1], delay=DELAY_MAX_SECONDS)
    conn.execute(f"SET TIME ZONE '{zone}'")
    listed = {j["id"]: j["run_at"] for j in admin.list_jobs(conn)}
    assert listed[latest].startswith(("9998-12-31", "9999-01-01"))
    assert listed[earliest].startswith(("0001-12-31", "0002-01-01"))
    assert admin.show_job(conn, far)["run_at"] == listed[far]
    for job_id in (far, bulk[0]):  # 100 years of 365 days: a few weeks short of a century
        assert int(listed[job_id][:4]) - datetime.now(UTC).year in (99, 100)
