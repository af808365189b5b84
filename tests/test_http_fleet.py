"""The HTTP API end to end: `jobfleet supervisor --http-port` with its supervised uvicorn child,
real sockets, keys made with the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import psycopg

import jobfleet
from jobfleet import processes
from jobfleet.http.server import free_port
from tests.conftest import Cli, scalar, wait_until
from tests.http_support import scrape_metrics

FAST = {
    "JOBFLEET_QUEUE_STATS_SECONDS": "0.5",
    "JOBFLEET_LEASE_SECONDS": "3",
    "JOBFLEET_HEARTBEAT_SECONDS": "0.2",
    "JOBFLEET_KILL_GRACE_SECONDS": "0.3",
}


def call(
    method: str, url: str, key: str | None = None, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers)
    ctype = headers.get("content-type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode(), headers


def answers(url: str) -> bool:
    try:
        return call("GET", url)[0] == 200
    except OSError:
        return False


def new_key(cli: Cli, name: str, scopes: str, *extra: str) -> str:
    out = cli.ok("apikey", "create", "--name", name, "--scopes", scopes, *extra)
    return out.strip().splitlines()[-1]


def test_a_job_posted_over_http_runs_and_its_result_comes_back(
    conn: psycopg.Connection[Any], fleet: Any, cli: Cli
) -> None:
    port = free_port()
    node = fleet("web", "--workers", "2", "--http-port", str(port), env=FAST)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz"), what="the HTTP child to answer")
    assert f"host=127.0.0.1 port={port}" in node.log()  # this host only, unless told otherwise
    key = new_key(cli, "client", "enqueue,read,cancel")

    assert call("POST", f"{base}/jobs", None, {"type": "echo"})[0] == 401
    reader = new_key(cli, "reader", "read")
    assert call("POST", f"{base}/jobs", reader, {"type": "echo"})[0] == 403
    status, body, _ = call("POST", f"{base}/jobs", key, {"type": "echo", "priority": "high"})
    assert status == 422 and body["field"] == "body.priority"

    status, job, _ = call("POST", f"{base}/jobs", key, {"type": "echo", "payload": {"x": 1}})
    assert status == 201
    done = wait_until(
        lambda: (
            (j := call("GET", f"{base}/jobs/{job['id']}", key)[1])["state"] == "succeeded" and j
        ),
        what="the echo job to succeed",
    )
    assert done["result"] == {"x": 1}
    assert done["attempts"][0]["node"] == "web"

    # Cancel a long job while it runs: it ends cancelled, its worker replaced.
    status, sleeper, _ = call(
        "POST", f"{base}/jobs", key, {"type": "sleep", "payload": {"seconds": 60}}
    )
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs WHERE id = %s", [sleeper["id"]]) == "running",
        what="the sleep job to start",
    )
    pids = set(node.children())
    status, cancelled, _ = call("DELETE", f"{base}/jobs/{sleeper['id']}", key)
    assert status == 202 and cancelled["state"] == "running"
    final = wait_until(
        lambda: (
            (j := call("GET", f"{base}/jobs/{sleeper['id']}", key)[1])["state"] == "cancelled" and j
        ),
        timeout=10,
        what="the running job to end cancelled",
    )
    assert [a["outcome"] for a in final["attempts"]] == ["cancelled"]
    wait_until(lambda: len(set(node.children()) - pids) >= 1, what="a replacement worker")

    # Progress a handler reports shows in GET while the job runs, rising.
    status, stepper, _ = call(
        "POST", f"{base}/jobs", key, {"type": "progress", "payload": {"steps": 20, "seconds": 0.1}}
    )
    seen: list[float] = []

    def progressed() -> bool:
        job = call("GET", f"{base}/jobs/{stepper['id']}", key)[1]
        if job["progress"] is not None and job["state"] == "running":
            seen.append(job["progress"]["fraction"])
        return job["state"] == "succeeded"

    wait_until(progressed, what="the progress job to finish")
    assert len(set(seen)) >= 2 and seen == sorted(seen), seen

    call("POST", f"{base}/jobs", key, {"type": "noop", "delay": 3600})  # stays queued

    def exposed() -> bool:
        text = call("GET", f"{base}/metrics")[1]
        wanted = (
            'jobfleet_jobs_succeeded_total{queue="default",type="echo"} 1.0',
            'jobfleet_jobs_started_total{queue="default",type="echo"} 1.0',
            'jobfleet_jobs_cancelled_total{queue="default",type="sleep"} 1.0',
            'jobfleet_jobs_enqueued_total{queue="default",type="echo"} 1.0',
            'jobfleet_workers{node="web"} 2.0',
            'jobfleet_leader{node="web"} 1.0',
            'jobfleet_child_restarts_total{node="web",reason="cancelled"} 1.0',
            'jobfleet_job_duration_seconds_count{queue="default",type="echo"} 1.0',
            'jobfleet_queue_depth{queue="default",state="queued"} 1.0',
            'jobfleet_http_requests_total{method="POST",route="/jobs",status="401"} 1.0',
            'jobfleet_job_progress_updates_total{queue="default",type="progress"}',
        )
        missing[:] = [w for w in wanted if w not in text]
        return not missing

    missing: list[str] = []
    try:
        wait_until(exposed, what="/metrics to show the run")
    except AssertionError:
        raise AssertionError(f"/metrics never showed {missing}") from None


def test_the_http_child_is_restarted_when_it_dies(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    port = free_port()
    node = fleet("web", "--workers", "1", "--http-port", str(port), env=FAST)
    health = f"http://127.0.0.1:{port}/healthz"
    wait_until(lambda: answers(health), what="the HTTP child to answer")
    http_pid = http_pids(node.log())[0]
    started = len(http_pids(node.log()))  # one per CPU by default
    os.kill(http_pid, signal.SIGKILL)
    wait_until(lambda: len(http_pids(node.log())) == started + 1, what="a new HTTP child")
    wait_until(lambda: answers(health), what="the new HTTP child to answer")
    assert "killed by signal 9" in node.log()


def http_pids(log: str) -> list[int]:
    """The HTTP children a node's log says it started, in order."""
    return [
        int(part.split("http_pid=")[1].split()[0]) for part in log.split("http child started")[1:]
    ]


def posted_jobs_counted(port: int) -> float:
    """POST /jobs requests answered 201, as /metrics counts them across the API's processes."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in scrape_metrics(port).splitlines()
        if line.startswith("jobfleet_http_requests_total{")
        and 'method="POST"' in line
        and 'route="/jobs"' in line
        and 'status="201"' in line
    )


def test_the_api_is_served_by_several_processes_on_one_port(
    conn: psycopg.Connection[Any], fleet: Any, cli: Cli
) -> None:
    port = free_port()
    node = fleet("web", "--workers", "1", "--http-port", str(port), "--http-processes", "3")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: len(http_pids(node.log())) == 3, what="three HTTP processes")
    key = new_key(cli, "many", "enqueue")
    for _ in range(12):  # a connection each: the kernel deals them to the processes
        assert call("POST", f"{base}/jobs", key, {"type": "echo", "payload": 1})[0] == 201
    # Whichever process answers the scrape, it counts every process's requests.
    wait_until(lambda: posted_jobs_counted(port) == 12, what="/metrics to count 12 POSTs")
    # One process killed: the others go on serving while it is started again.
    os.kill(http_pids(node.log())[0], signal.SIGKILL)
    for _ in range(12):
        assert call("POST", f"{base}/jobs", key, {"type": "echo", "payload": 2})[0] == 201
    wait_until(lambda: len(http_pids(node.log())) == 4, what="the killed process replaced")
    assert scalar(conn, "SELECT count(*) FROM jobs") == 24


def test_the_api_alone_can_run_several_processes(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    port = free_port()
    api = cli.start("api", "--port", str(port), "--processes", "2")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), what="jobfleet api to answer")
        key = new_key(cli, "edge", "enqueue")
        for _ in range(6):
            assert call("POST", f"{base}/jobs", key, {"type": "echo", "payload": 7})[0] == 201
        children = processes.child_pids(api.pid)
        assert len(children) == 2, children
    finally:
        api.send_signal(signal.SIGTERM)
        _, stderr = api.communicate(timeout=30)
    assert api.returncode == 0, stderr
    assert "processes=2" in stderr and stderr.count("http stopped") == 3, stderr
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]  # none left behind
    assert scalar(conn, "SELECT count(*) FROM jobs") == 6


def test_a_stop_that_comes_while_an_http_process_starts_is_kept_for_its_server() -> None:
    """An HTTP process listens for SIGTERM from the start of its main (importing the app takes
    a while): a stop then is kept, and the server, once made, stops at once instead of the
    process dying by the signal (`jobfleet api --processes 2` stopped right after its start
    left one child "killed by signal 15", and no "http stopped" from it)."""
    code = (
        "import os, signal, types; from jobfleet.http import server; server.stop_on_signal(); "
        "os.kill(os.getpid(), signal.SIGTERM); print(server.stop_asked); "
        "server._server = types.SimpleNamespace(should_exit=False); "
        "os.kill(os.getpid(), signal.SIGINT); print(server._server.should_exit)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split()) == (0, ["True", "True"]), done.stderr


def test_a_port_in_use_fails_the_start_with_a_clear_message(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("supervisor", "--http-port", str(port), "--burst", timeout=60)
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr  # the default address
    assert scalar(conn, "SELECT count(*) FROM nodes") == 0  # nothing written


def test_the_rate_limit_holds_across_nodes(
    conn: psycopg.Connection[Any], fleet: Any, cli: Cli
) -> None:
    ports = [free_port(), free_port()]
    for name, port in zip(("a", "b"), ports, strict=True):
        fleet(name, "--workers", "1", "--http-port", str(port), env=FAST)
    for port in ports:
        wait_until(lambda p=port: answers(f"http://127.0.0.1:{p}/healthz"), what="both APIs")
    key = new_key(cli, "limited", "read", "--rate", "5/s")
    outcomes: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.0

    def hammer(port: int) -> None:
        while time.monotonic() < stop:
            status = call("GET", f"http://127.0.0.1:{port}/queues", key)[0]
            with lock:
                outcomes.append((time.monotonic(), status))

    threads = [threading.Thread(target=hammer, args=(p,)) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    allowed = [t for t, s in outcomes if s == 200]
    refused = [s for _, s in outcomes if s == 429]
    assert refused and set(s for _, s in outcomes) == {200, 429}
    window = max(t for t, _ in outcomes) - min(t for t, _ in outcomes)
    # A bucket of 5/s with a burst of 1 allows 1 + 5 x window; every request the two nodes let
    # through came out of that one bucket.
    assert len(allowed) <= 1 + 5 * window * 1.2 + 1, (len(allowed), window)
    assert len(allowed) >= 5 * window * 0.8, (len(allowed), window)


def test_the_api_alone_serves_jobs_without_workers(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    port = free_port()
    api = cli.start("api", "--port", str(port), "--host", "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), what="jobfleet api to answer")
        key = new_key(cli, "edge", "enqueue,read")
        status, job, _ = call("POST", f"{base}/jobs", key, {"type": "echo", "payload": 7})
        assert status == 201 and job["state"] == "queued"
        assert call("GET", f"{base}/jobs/{job['id']}", key)[1]["payload"] == 7
        assert call("GET", f"{base}/readyz")[0] == 200
        assert scalar(conn, "SELECT count(*) FROM nodes") == 0  # an API host runs no jobs
    finally:
        api.send_signal(signal.SIGTERM)
        _, stderr = api.communicate(timeout=15)
    assert api.returncode == 0
    assert "http serving" in stderr and "http stopped" in stderr, stderr  # says when it stops
    # On uvloop, a dependency: the loop the bench measures is the one a user's install runs.
    assert "loop=uvloop" in stderr, stderr


def test_a_worker_recycled_after_its_jobs_counts_as_a_restart_for_that_reason(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """Why a worker left on its own is read from its slot (worker/slots.py), whatever became
    of its goodbye on the socket: counted under a bounded reason, never as a crash."""
    port = free_port()
    env = {**FAST, "JOBFLEET_MAX_JOBS_PER_CHILD": "2"}
    fleet("recycler", "--workers", "1", "--http-port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz"), what="the HTTP child to answer")
    jobfleet.enqueue_many(conn, "noop", list(range(6)))
    restarts = 'jobfleet_child_restarts_total{node="recycler",reason="max_jobs"}'

    def counted() -> float:
        for line in call("GET", f"{base}/metrics")[1].splitlines():
            if line.startswith(restarts + " "):
                return float(line.split()[-1])
        return 0.0

    wait_until(lambda: counted() >= 2, what="two workers recycled after their jobs")
    text = call("GET", f"{base}/metrics")[1]
    assert 'jobfleet_child_crashes_total{node="recycler"} 0.0' in text, text
    assert 'reason="crashed"' not in text
    assert not [line for line in text.splitlines() if "recycled after" in line]
