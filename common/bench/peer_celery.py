"""Celery as a peer, on a Redis broker started here (Debian's redis-server) on a loopback
port: a no-op task with results ignored, early acknowledgement (its default) and a large
prefetch multiplier (its optimizing guide, for many short tasks), the prefork pool with one
process per worker. Celery workers never exit on an empty queue, so the run ends when the
broker holds no message, queued or unacknowledged, and the worker is then stopped.

For the `io` scenario, the thread pool its docs give for I/O-bound tasks: one `celery worker
--pool threads --concurrency N` per worker process (a threads pool is one process), tasks that
block in `time.sleep`, the default prefetch multiplier (a large one would hand one process
nearly every task), and late acknowledgement so that "no message left" means every task ended,
not merely started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError, wait_until
from jobfleet.bench.peers import RUN_TIMEOUT, Sleepers, rate
from jobfleet.http.server import free_port

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

    # shared=False: a shared task (Celery's default) joins every app made later in this
    # process too, and the next app warns of a second callable under the name.
    @app.task(name="noop", shared=False)  # type: ignore[untyped-decorator, misc]
    def noop() -> None:
        return None

    @app.task(name="nap", acks_late=True, shared=False)  # type: ignore[untyped-decorator, misc]
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    return app


# The worker imports this module by name (`celery -A`) and finds the app here.
app = make_app(os.environ[BROKER_ENV]) if BROKER_ENV in os.environ else None


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server not found: apt-get install redis-server (or `make bench`)")
    return found


@contextlib.contextmanager
def _broker() -> Iterator[tuple[Any, str]]:
    """A Redis server of our own on a free loopback port: (a client, the broker URL)."""
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
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        wait_until(lambda: _pings(client), 30, "redis-server to answer", pause=0.02)
        yield client, f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _send(client: Any, broker: str, name: str, jobs: int, kwargs: dict[str, Any]) -> None:
    sender = make_app(broker)
    task = sender.tasks[name]
    with sender.connection_for_write() as conn, sender.producer_pool.acquire() as producer:
        del conn
        for _ in range(jobs):
            task.apply_async(kwargs=kwargs, producer=producer)
    queued = int(client.llen(QUEUE))
    if queued != jobs:
        raise BenchError(f"Celery queued {queued} of {jobs} tasks")


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    with _broker() as (client, broker):
        _send(client, broker, "noop", jobs, {})
        options = ["--pool", "prefork", "--concurrency", str(workers),
                   "--prefetch-multiplier", str(PREFETCH_MULTIPLIER)]  # fmt: skip
        seconds = _drain(client, broker, [options])
        return rate(jobs, seconds, prefetch_multiplier=PREFETCH_MULTIPLIER, pool="prefork")


def measure_sleepers(url: str, load: Sleepers) -> dict[str, Any]:
    with _broker() as (client, broker):
        _send(client, broker, "nap", load.jobs, {"seconds": load.seconds})
        options = [
            ["--pool", "threads", "--concurrency", str(load.concurrency), "-n", f"bench{i}@%h"]
            for i in range(1, load.workers + 1)
        ]
        seconds = _drain(client, broker, options)
        return rate(load.jobs, seconds, concurrency=load.concurrency, pool="threads")


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def _drain(client: Any, broker: str, workers: list[list[str]]) -> float:
    """Start one `celery worker` per option list at once; the seconds until the broker holds
    no message, queued or delivered and not yet acknowledged."""
    argv = [
        sys.executable, "-m", "celery", "-A", __name__, "worker",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--loglevel", "WARNING", "-Q", QUEUE,
    ]  # fmt: skip
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*argv, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env={**os.environ, BROKER_ENV: broker},
            start_new_session=True,
        )
        for options in workers
    ]

    def ended() -> bool:
        return bool(client.llen(QUEUE) == 0 and client.hlen(UNACKED) == 0)

    try:
        wait_until(
            lambda: any(p.poll() is not None for p in procs) or ended(),
            RUN_TIMEOUT,
            "Celery to run every task",
            pause=0.005,
        )
        seconds = time.perf_counter() - started
        for proc in procs:
            if proc.poll() is not None:
                raise BenchError(f"a Celery worker exited {proc.returncode} before the end")
        return seconds
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
