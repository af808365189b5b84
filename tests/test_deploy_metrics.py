"""Every metric the alert rules and the dashboard use is one that a live fleet's /metrics
exposes. Two nodes see every kind of event once: successes, failures, retries, a dead job, a
crashed worker, progress, a cancellation, a node paused past its lease (lost lease, late
completion), dropped database connections, HTTP requests, a rate-limited key, a paused queue
and a limited type held back."""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.error
import urllib.request
from typing import Any

import psycopg

import jobfleet
from jobfleet.http.server import free_port
from tests.conftest import Cli, scalar, wait_until
from tests.deploy_files import used_metric_names
from tests.http_support import scrape_metrics

FAST = {
    "JOBFLEET_QUEUE_STATS_SECONDS": "0.5",
    "JOBFLEET_LEASE_SECONDS": "2",
    "JOBFLEET_HEARTBEAT_SECONDS": "0.2",
    "JOBFLEET_REAPER_INTERVAL_SECONDS": "0.5",
    "JOBFLEET_KILL_GRACE_SECONDS": "0.3",
}
_SUFFIXES = ("_bucket", "_sum", "_count")


def exposed_names(port: int) -> set[str]:
    names = set()
    for line in scrape_metrics(port).splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            for suffix in _SUFFIXES:
                name = name.removesuffix(suffix)
            names.add(name)
    return names


def post_job(port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/jobs",
        data=json.dumps({"type": "noop", "payload": None}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_every_metric_in_rules_and_dashboard_is_exposed(
    cli: Cli, conn: psycopg.Connection[Any], fleet: Any
) -> None:
    used = used_metric_names()
    http_port, metrics_port = free_port(), free_port()
    # m never takes p's queue, so the job p is paused over is p's alone.
    main = fleet(
        "m", "--workers", "2", "--queues", "default", "--http-port", str(http_port), env=FAST
    )
    paused = fleet(
        "p", "--workers", "1", "--queues", "slow", "--metrics-port", str(metrics_port), env=FAST
    )
    # Flow control (issue 19): a queue paused (nothing in it), and noop limited to one
    # running at a time, so that claims find the limit full and are held back.
    cli.ok("queues", "pause", "unused")
    cli.ok("types", "set", "noop", "--max-running", "1")
    # Jobs of every outcome.
    jobfleet.enqueue_many(conn, "noop", [None] * 5)
    jobfleet.enqueue(conn, "fail", {"message": "x"}, max_attempts=2, backoff="fixed:0")
    jobfleet.enqueue(conn, "crash", {"signal": 9}, max_attempts=1)
    jobfleet.enqueue(conn, "progress", {"steps": 2, "seconds": 0.05})
    cancelled = jobfleet.enqueue(conn, "sleep", {"seconds": 30})
    # A node paused past its lease: the reaper records the attempt lost, and the node's late
    # result is fenced off when it resumes.
    held = jobfleet.enqueue(conn, "sleep", {"seconds": 1}, queue="slow", backoff="fixed:0")
    state = "SELECT state FROM jobs WHERE id = %s"
    wait_until(lambda: scalar(conn, state, (held,)) == "running", what="p to run its job")
    paused.signal(signal.SIGSTOP)
    lost = "SELECT count(*) FROM job_attempts WHERE job_id = %s AND outcome = 'lost'"
    wait_until(lambda: scalar(conn, lost, (held,)), what="the paused node's lease to be reaped")
    paused.signal(signal.SIGCONT)
    wait_until(lambda: scalar(conn, state, (cancelled,)) == "running", what="the long job")
    cli.ok("cancel", str(cancelled))
    # HTTP: a key allowed one request a second, used twice at once.
    key = cli.ok("apikey", "create", "--name", "m", "--scopes", "enqueue", "--rate", "1/s")
    key = key.strip().splitlines()[-1]
    assert [post_job(http_port, key), post_job(http_port, key)][-1] == 429
    # Database errors: the nodes' connections are cut; they reconnect by themselves.
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'jobfleet' AND datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    done = "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
    wait_until(lambda: scalar(conn, done) == 0, timeout=60, what="every job to end")

    def missing() -> set[str]:
        return used - exposed_names(http_port) - exposed_names(metrics_port)

    with contextlib.suppress(AssertionError):  # the gauges come with the leader's next pass
        wait_until(lambda: not missing(), timeout=30, what="every used metric on /metrics")
    assert not missing(), f"used by deploy/ but not exposed: {sorted(missing())}"
    assert main.proc.poll() is None and paused.proc.poll() is None
