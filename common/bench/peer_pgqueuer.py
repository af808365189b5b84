"""pgqueuer as a peer: the asyncpg driver (its benchmarks' fastest), a bigger dequeue batch
than the default 10 (its tuning guide, for short jobs) and drain mode (exit once the queue
is empty). For the `io` scenario, async entrypoints that `await asyncio.sleep`, with this
worker's picked jobs capped at the concurrency (`max_concurrent_tasks`, which must be at least
twice the batch). Run as a module, it is one worker process:
`python -m jobfleet.bench.peer_pgqueuer URL [CONCURRENCY]`."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import Sleepers, module_argv, rate, run_workers
from jobfleet.bench.scratch import scalar

BATCH_SIZE = 100
ENQUEUE_BATCH = 1000


async def _connect(url: str) -> Any:
    import asyncpg

    params = conninfo_to_dict(url)
    return await asyncpg.connect(
        host=params.get("host"),
        port=int(params.get("port") or 5432),
        user=params.get("user"),
        password=params.get("password"),
        database=params.get("dbname"),
    )


async def _prepare(url: str, jobs: int, entrypoint: str, payload: bytes | None) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await _connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, jobs, ENQUEUE_BATCH):
            n = min(ENQUEUE_BATCH, jobs - start)
            await queries.enqueue([entrypoint] * n, [payload] * n, [0] * n)
    finally:
        await conn.close()


def _drain(url: str, workers: int, *args: str) -> float:
    seconds = run_workers(module_argv(__name__, url, *args), workers)
    left = scalar(url, "SELECT count(*) FROM pgqueuer")  # done jobs leave the table
    if left:
        raise BenchError(f"pgqueuer's workers exited with {left} jobs not done")
    return seconds


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    asyncio.run(_prepare(url, jobs, "noop", None))
    seconds = _drain(url, workers)
    return rate(jobs, seconds, batch_size=BATCH_SIZE)


def measure_sleepers(url: str, load: Sleepers) -> dict[str, Any]:
    payload = json.dumps({"seconds": load.seconds}).encode()
    asyncio.run(_prepare(url, load.jobs, "nap", payload))
    seconds = _drain(url, load.workers, str(load.concurrency))
    return rate(
        load.jobs,
        seconds,
        concurrency=load.concurrency,
        batch_size=_sleeper_batch(load.concurrency),
        tasks="async",
    )


def _sleeper_batch(concurrency: int) -> int:
    """The largest batch pgqueuer allows under a cap of `concurrency` picked jobs."""
    return max(1, concurrency // 2)


async def _work(url: str, concurrency: int | None) -> None:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    conn = await _connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")  # type: ignore[untyped-decorator, misc]
    async def noop(job: Any) -> None:
        return None

    @qm.entrypoint("nap")  # type: ignore[untyped-decorator, misc]
    async def nap(job: Any) -> None:
        await asyncio.sleep(float(json.loads(job.payload)["seconds"]))

    if concurrency is None:
        await qm.run(batch_size=BATCH_SIZE, mode=QueueExecutionMode.drain)
    else:
        await qm.run(
            batch_size=_sleeper_batch(concurrency),
            max_concurrent_tasks=concurrency,
            mode=QueueExecutionMode.drain,
        )
    await conn.close()


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
