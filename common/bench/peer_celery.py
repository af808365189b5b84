"""Celery as a peer, on a Redis broker started here (Debian's redis-server) on a loopback
port: a no-op task with results ignored, early acknowledgement (its default) and a large
prefetch multiplier (its optimizing guide, for many short tasks), the prefork pool with one
process per worker. Celery workers never exit on an empty queue, so the run ends when the
broker holds no message, queued or unacknowledged, and the worker is then stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.enqueue import free_port
from jobfleet.bench.nodes import BenchError, wait_until
from jobfleet.bench.peers import RUN_TIMEOUT, rate

PREFETCH_MULTIPLIER = 128
QUEUE = "celery"
UNACKED = "unacked"  # kombu's Redis transport keeps delivered, unacknowledged messages here
BROKER_ENV = "JOBFLEET_BENCH_CELERY_BROKER"


def make_app(broker: str) -> Any:
    from celery import Celery

    app = Celery("jobfleet_bench", broker=broker)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
    )

    @app.task(name="noop")  # type: ignore[untyped-decorator, misc]
    def noop() -> None:
        return None

    return app


# The worker imports this module by name (`celery -A`) and finds the app here.
app = make_app(os.environ[BROKER_ENV]) if BROKER_ENV in os.environ else None


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server not found: apt-get install redis-server (or `make bench`)")
    return found


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    import redis

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="jobfleet-bench-redis-")
    server = subprocess.Popen(
        [
            redis_server(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        wait_until(lambda: _pings(client), 30, "redis-server to answer", pause=0.02)
        sender = make_app(broker)
        task = sender.tasks["noop"]
        with sender.connection_for_write() as conn, sender.producer_pool.acquire() as producer:
            del conn
            for _ in range(jobs):
                task.apply_async(producer=producer)
        queued = int(client.llen(QUEUE))
        if queued != jobs:
            raise BenchError(f"Celery queued {queued} of {jobs} tasks")
        seconds = _drain(client, broker, workers)
        return rate(jobs, seconds, prefetch_multiplier=PREFETCH_MULTIPLIER, pool="prefork")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def _drain(client: Any, broker: str, workers: int) -> float:
    argv = [
        sys.executable, "-m", "celery", "-A", __name__, "worker",
        "--concurrency", str(workers), "--pool", "prefork",
        "--prefetch-multiplier", str(PREFETCH_MULTIPLIER),
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "WARNING", "-Q", QUEUE,
    ]  # fmt: skip
    started = time.perf_counter()
    worker = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, BROKER_ENV: broker},
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: (
                worker.poll() is not None or (client.llen(QUEUE) == 0 and client.hlen(UNACKED) == 0)
            ),
            RUN_TIMEOUT,
            "Celery to run every task",
            pause=0.005,
        )
        seconds = time.perf_counter() - started
        if worker.poll() is not None:
            raise BenchError(f"the Celery worker exited {worker.returncode} before the end")
        return seconds
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
