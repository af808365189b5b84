"""procrastinate as a peer: an async no-op task, workers that exit once the queue is empty
(`wait=False`), several jobs in flight per worker (`concurrency`, for I/O-bound async tasks
in its docs) and LISTEN/NOTIFY on. Run as a module, it is one worker process."""

from __future__ import annotations

import sys
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import module_argv, rate, run_workers
from jobfleet.bench.scratch import scalar

CONCURRENCY = 16
DEFER_BATCH = 1000


def make_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")  # type: ignore[untyped-decorator, misc]
    async def noop() -> None:
        return None

    return app


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    app = make_app(url)
    with app.open():
        app.schema_manager.apply_schema()
        task = app.tasks["noop"]
        for start in range(0, jobs, DEFER_BATCH):
            task.batch_defer(*[{}] * min(DEFER_BATCH, jobs - start))
    seconds = run_workers(module_argv(__name__, url), workers)
    left = scalar(url, "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
    if left:
        raise BenchError(f"procrastinate's workers exited with {left} jobs not done")
    return rate(jobs, seconds, concurrency=CONCURRENCY)


def work(url: str) -> None:
    app = make_app(url)
    with app.open():
        app.run_worker(
            concurrency=CONCURRENCY, wait=False, install_signal_handlers=False, listen_notify=True
        )


if __name__ == "__main__":
    work(sys.argv[1])
