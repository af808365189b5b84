"""The core's acceptance run: enqueue each example type, drain with --burst, check the rows."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.conftest import Cli, scalar


def test_burst_drains_the_examples_with_the_right_outcomes(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    cli.ok("migrate")
    echo = int(cli.ok("enqueue", "echo", "--payload", '{"hello": "world"}'))
    fail = int(
        cli.ok(
            "enqueue",
            "fail",
            "--max-attempts",
            "3",
            "--backoff",
            "fixed:0",
            "--payload",
            '{"message": "always"}',
        )
    )
    flaky = int(
        cli.ok("enqueue", "flaky", "--payload", '{"fail_times": 2}', "--backoff", "fixed:0")
    )
    noop = int(cli.ok("enqueue", "noop"))
    cpu = int(cli.ok("enqueue", "cpu", "--payload", '{"ms": 5}'))
    sleep = int(cli.ok("enqueue", "sleep", "--payload", '{"seconds": 0.01}'))
    waits = [
        int(cli.ok("enqueue", "async_sleep", "--payload", '{"seconds": 0.3}')) for _ in range(3)
    ]
    later = int(cli.ok("enqueue", "echo", "--delay", "3600"))
    low = int(cli.ok("enqueue", "noop", "--priority", "0"))
    high = int(cli.ok("enqueue", "noop", "--priority", "9"))
    dup = int(cli.ok("enqueue", "echo", "--idempotency-key", "once"))
    assert int(cli.ok("enqueue", "echo", "--idempotency-key", "once")) == dup

    cli.ok("supervisor", "--burst", "--workers", "1")

    job = cli.json("jobs", "show", str(echo))
    assert (job["state"], job["result"]) == ("succeeded", {"hello": "world"})

    dead = cli.json("jobs", "show", str(fail))
    assert (dead["state"], dead["attempt"]) == ("dead", 3)
    assert [a["outcome"] for a in dead["attempts"]] == ["failed"] * 3
    assert all("always" in a["error"] for a in dead["attempts"])
    assert "always" in dead["error"]

    flaky_job = cli.json("jobs", "show", str(flaky))
    assert (flaky_job["state"], flaky_job["attempt"]) == ("succeeded", 3)
    assert [a["outcome"] for a in flaky_job["attempts"]] == ["failed", "failed", "succeeded"]

    for job_id in (noop, cpu, sleep, dup, *waits):
        assert cli.json("jobs", "show", str(job_id))["state"] == "succeeded"
    # The one worker ran the async example's three jobs at once, not one after the other.
    spans = conn.execute(
        "SELECT started_at, finished_at FROM job_attempts WHERE job_id = ANY(%s)", (waits,)
    ).fetchall()
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert cli.json("jobs", "show", str(later))["state"] == "queued"
    assert cli.json("jobs", "show", str(later))["attempts"] == []

    started = dict(conn.execute("SELECT job_id, started_at FROM job_attempts").fetchall())
    assert started[high] < started[low]

    counts = json.loads(cli.ok("status", "--json"))["counts"]
    assert counts == {"queued": 1, "running": 0, "succeeded": 11, "cancelled": 0, "dead": 1}
    assert scalar(conn, "SELECT count(*) FROM job_attempts WHERE job_id = %s", (fail,)) == 3


def test_burst_leaves_unhandled_types_queued(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    cli.ok("enqueue", "mystery")
    cli.ok("enqueue", "echo")
    cli.ok("supervisor", "--burst")
    assert dict(conn.execute("SELECT type, state FROM jobs").fetchall()) == {
        "mystery": "queued",
        "echo": "succeeded",
    }
    assert json.loads(cli.ok("status", "--json"))["unhandled_types"] == ["mystery"]


def test_handlers_from_a_user_module_and_their_type_defaults(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Any
) -> None:
    (tmp_path / "my_handlers.py").write_text(
        "from jobfleet.worker import handler\n"
        "@handler('shout', max_attempts=2, queue='loud')\n"
        "def shout(payload):\n"
        "    return payload['text'].upper()\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    cli.ok("supervisor", "--burst", "--handlers", "my_handlers", "--queues", "loud", env=env)
    job_id = cli.ok("enqueue", "shout", "--payload", '{"text": "hi"}').strip()
    assert conn.execute("SELECT queue, max_attempts FROM jobs").fetchone() == ("loud", 2)
    cli.ok("supervisor", "--burst", "--handlers", "my_handlers", "--queues", "loud", env=env)
    assert cli.json("jobs", "show", job_id)["result"] == "HI"
    missing = cli("supervisor", "--burst", "--handlers", "no_such_module")
    assert (
        missing.returncode == 2
        and "cannot import handler module 'no_such_module'" in missing.stderr
    )
