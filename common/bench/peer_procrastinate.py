"""procrastinate as a peer: async tasks, workers that exit once the queue is empty
(`wait=False`), several jobs in flight per worker (`concurrency`, for I/O-bound async tasks
in its docs) and LISTEN/NOTIFY on. Run as a module, it is one worker process:
`python -m jobfleet.bench.peer_procrastinate URL [CONCURRENCY]`."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import Sleepers, module_argv, rate, run_workers
from jobfleet.bench.scratch import scalar

CONCURRENCY = 16
DEFER_BATCH = 1000


def make_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")  # type: ignore[untyped-decorator, misc]
    async def noop() -> None:
        return None

    @app.task(name="nap")  # type: ignore[untyped-decorator, misc]
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return app


def _queue(url: str, task_name: str, kwargs: dict[str, Any], jobs: int) -> None:
    app = make_app(url)
    with app.open():
        app.schema_manager.apply_schema()
        task = app.tasks[task_name]
        for start in range(0, jobs, DEFER_BATCH):
            task.batch_defer(*[kwargs] * min(DEFER_BATCH, jobs - start))


def _drain(url: str, jobs: int, workers: int, concurrency: int) -> float:
    seconds = run_workers(module_argv(__name__, url, str(concurrency)), workers)
    left = scalar(url, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
    if left:
        raise BenchError(f"procrastinate's workers exited with {left} jobs not done")
    return seconds


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    _queue(url, "noop", {}, jobs)
    seconds = _drain(url, jobs, workers, CONCURRENCY)
    return rate(jobs, seconds, concurrency=CONCURRENCY)


def measure_sleepers(url: str, load: Sleepers) -> dict[str, Any]:
    """Async tasks that `await asyncio.sleep`, `load.concurrency` at once per worker."""
    _queue(url, "nap", {"seconds": load.seconds}, load.jobs)
    seconds = _drain(url, load.jobs, load.workers, load.concurrency)
    return rate(load.jobs, seconds, concurrency=load.concurrency, tasks="async")


def work(url: str, concurrency: int) -> None:
    app = make_app(url)
    with app.open():
        app.run_worker(
            concurrency=concurrency, wait=False, install_signal_handlers=False, listen_notify=True
        )


if __name__ == "__main__":
    work(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else CONCURRENCY)
