"""The `jobfleet` command as users and scripts run it: output, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import JOBFLEET, Cli, scalar


def test_enqueue_prints_the_id_alone(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    out = cli.ok("enqueue", "echo", "--payload", '{"a": 1}', "--priority", "3")
    assert out.strip().isdigit()
    job_id = int(out)
    assert conn.execute(
        "SELECT type, payload, priority FROM jobs WHERE id = %s", (job_id,)
    ).fetchone() == ("echo", {"a": 1}, 3)


def test_enqueue_idempotency_key_prints_the_existing_id(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    first = cli.ok("enqueue", "echo", "--idempotency-key", "abc")
    second = cli.ok("enqueue", "echo", "--idempotency-key", "abc", "--payload", "2")
    assert first == second
    assert scalar(conn, "SELECT count(*) FROM jobs") == 1


def test_enqueue_from_jsonl_file_and_stdin(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"n": 1}\n\n{"n": 2}\n[3]\n')
    assert cli.ok("enqueue", "echo", "--from-jsonl", str(path), "--queue", "bulk").strip() == "3"
    assert cli.ok("enqueue", "noop", "--from-jsonl", "-", input="1\n2\n").strip() == "2"
    assert conn.execute("SELECT payload FROM jobs WHERE queue = 'bulk' ORDER BY id").fetchall() == [
        ({"n": 1},),
        ({"n": 2},),
        ([3],),
    ]
    assert scalar(conn, "SELECT count(*) FROM jobs") == 5


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "echo", "--payload", "{not json"], "--payload is not valid JSON"),
        (["enqueue", "echo", "--priority", "-1"], "priority -1 is out of range"),
        (["enqueue", "echo", "--priority", "99999"], "out of range"),
        (["enqueue", "echo", "--run-at", "tomorrow-ish"], "not an ISO 8601 time"),
        (["enqueue", "echo", "--delay", "soon"], "delay 'soon' must be a number"),
        (["enqueue", "echo", "--max-attempts", "0"], "max_attempts 0 is out of range"),
        (["enqueue", "echo", "--backoff", "sometimes"], "backoff 'sometimes'"),
        (["enqueue", "bad type"], "type 'bad type' is not valid"),
        (["jobs", "list", "--state", "finished"], "state 'finished' is not one of"),
        (["dlq", "purge", "--older-than", "a while"], "is not a duration"),
        (["dlq", "purge", "--older-than", "99999999999999w"], "at most 100 years"),
        (["enqueue", "echo", "--delay", "1e12"], "delay '1e12' is too large"),
        (["enqueue", "echo", "--delay", "1e300"], "delay '1e300' is too large"),
        (["enqueue", "echo", "--run-at", "9999-12-31T23:59:59-05:00"], "run_at '9999-12-31"),
        (["enqueue", "echo", "--timeout", "1e300"], "timeout '1e300' is too large"),
        (["enqueue", "echo", "--backoff", "exponential:1e308"], "backoff '1e308' is too large"),
        (["enqueue", "echo", "--priority", "9" * 5000], "priority '99999"),
        (["enqueue", "echo", "--payload", "[" * 300 + "]" * 300], "deeper than 64 levels"),
        (["enqueue", "echo", "--payload", "[" * 5000 + "]" * 5000], "--payload nests"),
        (["enqueue", "echo", "--payload", '"\\udcff"'], "payload contains a lone surrogate"),
        (["enqueue", "echo", "--payload", '"\udcff"'], "payload contains a lone surrogate"),
        (["enqueue", "echo", "--idempotency-key", "k\udcff"], "idempotency_key contains"),
        (["enqueue", "echo", "--queue", "q\udcff"], "queue 'q\\udcff' is not valid"),
        (["jobs", "show", str(2**63)], "is not a job id"),
        (["cancel", str(2**63)], "is not a job id"),
        (["dlq", "retry", str(10**30)], "is not a job id"),
        (["dlq", "list", "--limit", str(2**63)], "is too many"),
        (["jobs", "list", "--limit", "99999999999999999999"], "is too many"),
        (
            ["apikey", "create", "--name", "k", "--scopes", "read", "--rate", "9" * 400 + "/s"],
            "--rate",
        ),
        (["apikey", "create", "--name", "k", "--scopes", "read", "--rate", "2000000/s"], "--rate"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    cli: Cli, conn: psycopg.Connection[Any], args: list[str], fragment: str
) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_revoking_a_name_no_key_can_have_says_so(cli: Cli) -> None:
    for name in ("k\udcff", "two words", "k\n"):
        result = cli("apikey", "revoke", name)
        assert result.returncode == 1, result.stderr
        assert "no API key named" in result.stderr and "codec" not in result.stderr


def test_bad_jsonl_line_writes_nothing(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    result = cli("enqueue", "echo", "--from-jsonl", "-", input='{"ok": 1}\n{broken\n')
    assert result.returncode == 2
    assert "line 2 is not valid JSON" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b'"caf\xe9"', "--from-jsonl line 2 is not UTF-8 (byte 5 of the line)"),
        (b'"\\udcff"', "payload #2: payload contains a lone surrogate"),
        (b'{"k": "\\u0000"}', "payload #2: payload contains a NUL character"),
        (b"[" * 100 + b"]" * 100, "payload #2: payload nests arrays and objects deeper than 64"),
    ],
)
def test_a_jsonl_line_postgresql_cannot_store_writes_nothing(
    cli: Cli, conn: psycopg.Connection[Any], open_tmp: Path, line: bytes, fragment: str
) -> None:
    path = open_tmp / "jobs.jsonl"
    path.write_bytes(b'{"ok": 1}\n' + line + b"\n")
    for source in (str(path), "-"):  # a file, and the same bytes on stdin
        result = subprocess.run(
            [JOBFLEET, "enqueue", "echo", "--from-jsonl", source],
            input=path.read_bytes(),
            capture_output=True,
            env=cli.env,
            timeout=60,
        )
        stderr = result.stderr.decode()
        assert result.returncode == 2, stderr
        assert fragment in stderr and stderr.count("\n") == 1, stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_oversized_payload_in_jsonl_writes_nothing(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    big = json.dumps("x" * (1024 * 1024))
    result = cli("enqueue", "echo", "--from-jsonl", "-", input=f"1\n{big}\n")
    assert result.returncode == 2
    assert (
        "payload #2: payload is 1048578 bytes (1.0 MiB), over the limit of 1048576 bytes"
        in result.stderr
    )
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_payload_limit_is_configurable(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    small = {"JOBFLEET_MAX_PAYLOAD_BYTES": "10"}
    result = cli("enqueue", "echo", "--payload", '"0123456789"', env=small)
    assert result.returncode == 2 and "12 bytes, over the limit of 10 bytes" in result.stderr
    assert "JOBFLEET_MAX_PAYLOAD_BYTES" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_bad_setting_names_variable_value_and_rule(cli: Cli) -> None:
    result = cli("status", env={"JOBFLEET_LEASE_SECONDS": "soon"})
    assert result.returncode == 2
    assert "JOBFLEET_LEASE_SECONDS='soon'" in result.stderr
    assert "number" in result.stderr
    result = cli("status", env={"JOBFLEET_GRACE_SECONDS": "-1"})
    assert result.returncode == 2 and "JOBFLEET_GRACE_SECONDS='-1'" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("JOBFLEET_LEASE_SECONDS", "inf", "from 1 to 86400"),  # the supervisor died at its claim
        ("JOBFLEET_STATEMENT_TIMEOUT_SECONDS", "1e-9", "0 turns the timeout off"),
        ("JOBFLEET_BACKOFF_MAX_SECONDS", "1e308", "from 0 to 604800"),
        ("JOBFLEET_MAX_PAYLOAD_BYTES", "99999999999999999999", "from 1 to 33554432"),
        ("JOBFLEET_RETENTION_SECONDS", "nan", "from 0 to 3153600000"),
    ],
)
def test_a_setting_out_of_range_stops_the_command_at_start(
    cli: Cli, conn: psycopg.Connection[Any], variable: str, value: str, rule: str
) -> None:
    result = cli("enqueue", "echo", env={variable: value})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"jobfleet: bad setting: {variable}='{value}' is not allowed")
    assert rule in result.stderr and result.stderr.count("\n") == 1
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:Zq1@Zq2@127.0.0.1:1/db",
        "postgresql://app:Zq1/Zq2@127.0.0.1:1/db",
        "postgresql://app:Zq1 Zq2@127.0.0.1:1/db",
        "postgresql://127.0.0.1:1/db?password=Zq1@Zq2",
        "host=127.0.0.1 password=Zq1 Zq2",
        "mysql://app:Zq1@127.0.0.1/Zq2",
    ],
)
def test_a_database_url_libpq_would_misread_is_refused_without_showing_it(
    cli: Cli, url: str
) -> None:
    for args in (("status",), ("db", "url")):
        result = cli(*args, env={"JOBFLEET_DATABASE_URL": url})
        assert result.returncode == 2
        assert result.stderr.startswith("jobfleet: bad setting: JOBFLEET_DATABASE_URL=(not shown")
        assert "Zq1" not in result.stderr and "Zq2" not in result.stderr
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://app:s3cret@127.0.0.1:1/nowhere", "s3cret"),
        ("postgresql://app:Zq1%40Zq2%3AZq3@127.0.0.1:1/nowhere", "Zq2"),
        ("postgresql://app:Zq1%20Zq2@127.0.0.1:1/nowhere", "Zq2"),
        ("postgresql://app:Zq1'Zq2%22@127.0.0.1:1/nowhere", "Zq2"),
        ("postgresql://app@127.0.0.1:1/nowhere?password=Zq1%20Zq2", "Zq2"),
        ("host=127.0.0.1 port=1 user=app password='Zq1 Zq2 @:'", "Zq2"),
        ("host=127.0.0.1 port=1 password='Zq1\\'Zq2 \"Zq3\"'", "Zq2"),
    ],
)
def test_unreachable_database_says_which_url_with_password_masked(
    cli: Cli, url: str, secret: str
) -> None:
    result = cli(
        "enqueue",
        "echo",
        env={"JOBFLEET_DATABASE_URL": url, "JOBFLEET_CONNECT_TIMEOUT_SECONDS": "2"},
    )
    assert result.returncode == 3
    assert "host=127.0.0.1 port=1" in result.stderr and "password=***" in result.stderr
    assert secret not in result.stderr and "Zq1" not in result.stderr
    assert "JOBFLEET_DATABASE_URL" in result.stderr
    assert result.stderr.count("\n") == 1
    shown = cli("db", "url", env={"JOBFLEET_DATABASE_URL": url})
    assert "password=***" in shown.stdout and secret not in shown.stdout


def test_status_json_shape(cli: Cli) -> None:
    cli.ok("enqueue", "mystery")
    report = cli.json("status")
    assert report["counts"] == {
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "cancelled": 0,
        "dead": 0,
    }
    assert report["nodes"] == []
    assert report["unhandled_types"] == ["mystery"]
    assert "queued=1" in cli.ok("status")


def test_jobs_show_json_shape_and_human_form(cli: Cli) -> None:
    job_id = cli.ok("enqueue", "echo", "--payload", '{"v": 5}').strip()
    cli.ok("supervisor", "--burst", "--workers", "1")
    job = cli.json("jobs", "show", job_id)
    for key in (
        "id",
        "type",
        "queue",
        "state",
        "priority",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "finished_at",
        "payload",
        "result",
        "error",
        "progress",
        "attempts",
    ):
        assert key in job, key
    assert (job["state"], job["result"], job["attempt"]) == ("succeeded", {"v": 5}, 1)
    [attempt] = job["attempts"]
    assert set(attempt) >= {
        "attempt",
        "outcome",
        "node",
        "pid",
        "started_at",
        "finished_at",
        "error",
    }
    assert attempt["outcome"] == "succeeded" and isinstance(attempt["pid"], int)
    human = cli.ok("jobs", "show", job_id)
    assert "state=succeeded" in human and '"v": 5' in human
    missing = cli("jobs", "show", "424242")
    assert missing.returncode == 1 and "job 424242 does not exist" in missing.stderr


def test_jobs_list(cli: Cli) -> None:
    a = cli.ok("enqueue", "echo").strip()
    b = cli.ok("enqueue", "fail", "--queue", "other").strip()
    listed = cli.json("jobs", "list")
    assert [str(j["id"]) for j in listed] == [b, a]
    assert [str(j["id"]) for j in cli.json("jobs", "list", "--queue", "other")] == [b]
    assert [str(j["id"]) for j in cli.json("jobs", "list", "--type", "echo", "--limit", "5")] == [a]
    human = cli.ok("jobs", "list", "--state", "queued")
    assert human.splitlines()[0].split()[:4] == ["id", "type", "queue", "state"]


def test_cancel_command(cli: Cli) -> None:
    job_id = cli.ok("enqueue", "echo", "--delay", "600").strip()
    assert f"job {job_id} cancelled" in cli.ok("cancel", job_id)
    again = cli("cancel", job_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    assert cli.json("jobs", "show", job_id)["state"] == "cancelled"


def test_dlq_commands(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    job_id = cli.ok(
        "enqueue", "fail", "--max-attempts", "1", "--payload", '{"message": "disk on fire"}'
    ).strip()
    cli.ok("supervisor", "--burst")
    [dead] = cli.json("dlq", "list")
    assert str(dead["id"]) == job_id and "disk on fire" in dead["last_error"]
    assert "disk on fire" in cli.ok("dlq", "list")
    assert "queued again: 1 job" in cli.ok("dlq", "retry", job_id)
    assert scalar(conn, "SELECT state FROM jobs") == "queued"
    cli.ok("supervisor", "--burst")
    assert "queued again: 1 job" in cli.ok("dlq", "retry", "--all")
    cli.ok("supervisor", "--burst")
    assert scalar(conn, "SELECT count(*) FROM job_attempts") == 3
    assert "purged: 0" in cli.ok("dlq", "purge", "--older-than", "1d")
    assert "purged: 1 dead job" in cli.ok("dlq", "purge")
    assert scalar(conn, "SELECT count(*) FROM jobs") == 0


def test_jobs_wait(cli: Cli) -> None:
    ok = cli.ok("enqueue", "echo", "--payload", '{"answer": 42}').strip()
    bad = cli.ok("enqueue", "fail", "--max-attempts", "1").strip()
    timed = cli("jobs", "wait", ok, "--timeout", "0.1")
    assert timed.returncode == 124 and "still queued" in timed.stderr
    cli.ok("supervisor", "--burst")
    assert json.loads(cli.ok("jobs", "wait", ok)) == {"answer": 42}
    failed = cli("jobs", "wait", bad, "--timeout", "5")
    assert failed.returncode == 1 and "ended dead" in failed.stderr
    assert cli.json("jobs", "wait", ok)["state"] == "succeeded"


def test_help_lists_the_commands(cli: Cli) -> None:
    out = cli.ok("--help")
    for command in ("migrate", "supervisor", "enqueue", "status", "jobs", "cancel", "dlq"):
        assert command in out
    assert "--burst" in cli.ok("supervisor", "--help")


def test_bad_input_is_refused_before_any_database_is_reached(cli: Cli, tmp_path: Path) -> None:
    """With no database to reach at all, bad input still gets its own message and exit 2."""
    nowhere = {"JOBFLEET_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    for args in (
        ("enqueue", "bad type!"),
        ("enqueue", "echo", "--priority", "99999"),
        ("enqueue", "echo", "--delay", "1e300"),
        ("enqueue", "echo", "--payload", '"\\u0000"'),
    ):
        refused = cli(*args, env=nowhere)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "cannot connect" not in refused.stderr, (args, refused.stderr)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"ok": 1}\n"\\u0000"\n')
    refused = cli("enqueue", "echo", "--from-jsonl", str(jsonl), env=nowhere)
    assert refused.returncode == 2 and "cannot connect" not in refused.stderr, refused.stderr


def test_jobs_name_their_node_as_status_does_and_list_by_it(
    conn: psycopg.Connection[Any], cli: Cli
) -> None:
    import jobfleet
    from jobfleet.supervisor.store import claim

    held, other = jobfleet.enqueue(conn, "echo"), jobfleet.enqueue(conn, "noop")
    claim(conn, holder="n1/66d80f7a", types=["echo"], queues=None, limit=1, lease_seconds=60)
    shown = cli.json("jobs", "show", str(held))
    assert (shown["node"], shown["run"]) == ("n1", "66d80f7a")
    assert cli.json("jobs", "show", str(other))["node"] is None
    assert [j["id"] for j in cli.json("jobs", "list", "--node", "n1")] == [held]
    assert {j["id"]: j["node"] for j in cli.json("jobs", "list")} == {held: "n1", other: None}
    header = cli.ok("jobs", "list").splitlines()[0].split()
    assert header[:7] == ["id", "type", "queue", "state", "pri", "attempt", "node"]
    assert cli("jobs", "list", "--node", "bad name!").returncode == 2
