"""Scenario 4, enqueue: one job per transaction through `jobfleet.enqueue`, bulk through
`jobfleet.enqueue_many` (COPY) against a raw COPY of the same rows, and HTTP when the running
version has the API (`jobfleet apikey --help` succeeds)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

import jobfleet
from jobfleet.bench import http_load, scratch
from jobfleet.bench.context import Context
from jobfleet.bench.nodes import (
    BenchError,
    BenchNode,
    started_nodes,
    wait_until,
)
from jobfleet.http.server import free_port
from jobfleet.node_process import jobfleet_command

# Bulk runs alternate and the best of each counts: a shared machine's noise hits both alike.
BULK_ROUNDS = 2
HTTP_BATCH_REQUESTS = 10
# Callers at once, each waiting for its answer before its next request (keep-alive).
HTTP_CLIENTS = (1, 8, 32)
# The node serving HTTP claims from a queue nothing is sent to: the bench times enqueue alone.
NOTHING_QUEUE = "bench-http-only"


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    with scratch.scratch_database(ctx.server, "enqueue") as url:
        ctx.step(f"enqueue: {sizes.enqueue_single:,} single-row transactions")
        single = rate(sizes.enqueue_single, lambda: enqueue_single(url, sizes.enqueue_single))
        bulk: list[float] = []
        raw: list[float] = []
        for _ in range(BULK_ROUNDS):
            ctx.step(f"enqueue: {sizes.enqueue_bulk:,} jobs, enqueue_many vs raw COPY")
            scratch.reset(url)
            bulk.append(timed(lambda: enqueue_bulk(url, sizes.enqueue_bulk)))
            scratch.reset(url)
            raw.append(timed(lambda: raw_copy(url, sizes.enqueue_bulk)))
        ctx.step("enqueue: HTTP")
        scratch.reset(url)
        via_http = run_http(ctx, url)
    bulk_rate = sizes.enqueue_bulk / min(bulk)
    raw_rate = sizes.enqueue_bulk / min(raw)
    return {
        "single": single,
        "bulk": {"jobs": sizes.enqueue_bulk, "seconds": min(bulk), "jobs_per_s": bulk_rate},
        "raw_copy": {"jobs": sizes.enqueue_bulk, "seconds": min(raw), "jobs_per_s": raw_rate},
        "bulk_vs_raw_copy": bulk_rate / raw_rate,
        "http": via_http,
    }


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rate(jobs: int, action: Callable[[], object]) -> dict[str, Any]:
    seconds = timed(action)
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}


def enqueue_single(url: str, count: int) -> None:
    """As a web request would: one job, one transaction, one commit each."""
    with psycopg.connect(url) as conn:
        for _ in range(count):
            jobfleet.enqueue(conn, "noop", None)
            conn.commit()


def enqueue_bulk(url: str, count: int) -> None:
    with psycopg.connect(url) as conn:
        jobfleet.enqueue_many(conn, "noop", [None] * count)
        conn.commit()


def raw_copy(url: str, count: int) -> None:
    """What PostgreSQL takes at best: the same rows, pre-formatted, in big COPY writes."""
    run_at = datetime.now(UTC)
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur, cur.copy(scratch.COPY_JOBS) as copy:
            for chunk in scratch.copy_rows("noop", "null", count, run_at):
                copy.write(chunk)
        conn.commit()


# -- HTTP ---------------------------------------------------------------------------------


def http_available() -> bool:
    probe = subprocess.run(
        [jobfleet_command(), "apikey", "--help"], capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


def run_http(ctx: Context, url: str) -> dict[str, Any]:
    if not http_available():
        return {"skipped": "HTTP API not available"}
    key = create_key(url)
    port = free_port()
    http_processes = len(os.sched_getaffinity(0)) or 1  # the default: one per CPU
    with started_nodes() as started:
        node = BenchNode(
            url,
            "bench-http",
            workers=1,
            extra_args=(
                *("--http-port", str(port), "--http-processes", str(http_processes)),
                *("--queues", NOTHING_QUEUE),
            ),
            log_dir=ctx.log_dir,
        )
        started.append(node)
        wait_until(lambda: healthy(port), 60, "the HTTP API to answer /healthz", pause=0.05)
        try:
            single = post_single(port, key, ctx.sizes.http_single)
            batch = post_batches(port, key, ctx.sizes.http_batch, HTTP_BATCH_REQUESTS)
            concurrent = []
            for clients in HTTP_CLIENTS:
                ctx.step(f"enqueue: HTTP, {clients} clients at once")
                per_client = max(1, ctx.sizes.http_concurrent // clients)
                concurrent.append(http_load.post_jobs(port, key, clients, per_client))
        except BenchError as exc:
            return {"error": str(exc)}
        node.stop()
    return {
        "single": single,
        "batch": batch,
        "clients": concurrent,
        "processes": http_processes,
        "clients_32_vs_1": concurrent[-1]["jobs_per_s"] / concurrent[0]["jobs_per_s"],
    }


def create_key(url: str) -> str:
    made = subprocess.run(
        [jobfleet_command(), "apikey", "create", "--name", "bench", "--scopes", "enqueue"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBFLEET_DATABASE_URL": url},
        check=False,
    )
    if made.returncode != 0 or not made.stdout.strip():
        raise BenchError(f"jobfleet apikey create failed: {made.stderr.strip()}")
    return made.stdout.strip().splitlines()[-1].strip()


def healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def post(conn: http.client.HTTPConnection, path: str, key: str, body: Any) -> None:
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    text = response.read()
    if not 200 <= response.status < 300:
        raise BenchError(f"POST {path}: HTTP {response.status}: {text[:300]!r}")


def post_single(port: int, key: str, count: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for _ in range(count):
        post(conn, "/jobs", key, {"type": "noop", "payload": None})
    seconds = time.perf_counter() - started
    return {"jobs": count, "seconds": seconds, "jobs_per_s": count / seconds}


def post_batches(port: int, key: str, size: int, requests: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"jobs": [{"type": "noop", "payload": None}] * size}
    started = time.perf_counter()
    for _ in range(requests):
        post(conn, "/jobs:batch", key, body)
    seconds = time.perf_counter() - started
    jobs = size * requests
    return {"jobs": jobs, "per_request": size, "seconds": seconds, "jobs_per_s": jobs / seconds}
