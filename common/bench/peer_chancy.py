"""Chancy as a peer: a queue on its asyncio executor (its docs' choice for many light jobs: no
process or thread per job) with `eager_polling` (fetch again as soon as a job completes,
instead of waiting out the polling interval), 50 jobs at once per worker, and async no-op jobs
pushed in bulk (`push_many`). Chancy workers never exit on an empty queue: the run ends when
no job is left unfinished, and the workers are then stopped. Run as a module, it is one worker
process: `python -m jobfleet.bench.peer_chancy URL`."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import module_argv, rate, run_until
from jobfleet.bench.scratch import scalar

CONCURRENCY = 50
QUEUE = "bench"
PUSH_BATCH = 1000
LEFT = "SELECT count(*) FROM chancy_jobs WHERE state <> 'succeeded'"


async def noop() -> None:
    return None


def _app(url: str) -> Any:
    from chancy import Chancy

    log = logging.getLogger("chancy")
    log.setLevel(logging.WARNING)  # a line per job pulled otherwise
    return Chancy(url, log=log)


async def _prepare(url: str, jobs: int) -> None:
    from chancy import Chancy, Queue
    from chancy.job import Job

    async with _app(url) as chancy:
        await chancy.migrate()
        queue = Queue(
            name=QUEUE,
            concurrency=CONCURRENCY,
            executor=Chancy.Executor.Async,
            polling_interval=1,
            eager_polling=True,
        )
        await chancy.declare(queue, upsert=True)
        job = Job.from_func(noop, queue=QUEUE)
        async for _ in chancy.push_many([job] * jobs, batch_size=PUSH_BATCH):
            pass


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    asyncio.run(_prepare(url, jobs))
    seconds = run_until(module_argv(__name__, url), workers, url, LEFT)
    if scalar(url, LEFT):
        raise BenchError("Chancy's workers stopped with jobs not done")
    return rate(jobs, seconds, concurrency=CONCURRENCY, executor="async")


async def _work(url: str) -> None:
    from chancy import Worker

    async with _app(url) as chancy, Worker(chancy, register_signal_handlers=False) as worker:
        await worker.wait_for_shutdown()


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1]))
