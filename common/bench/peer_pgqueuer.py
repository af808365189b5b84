"""pgqueuer as a peer: the asyncpg driver (its benchmarks' fastest), a bigger dequeue batch
than the default 10 (its tuning guide, for short jobs) and drain mode (exit once the queue
is empty). Run as a module, it is one worker process."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import module_argv, rate, run_workers
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


async def _prepare(url: str, jobs: int) -> None:
    from pgqueuer import AsyncpgDriver, Queries

    conn = await _connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, jobs, ENQUEUE_BATCH):
            n = min(ENQUEUE_BATCH, jobs - start)
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    finally:
        await conn.close()


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    asyncio.run(_prepare(url, jobs))
    seconds = run_workers(module_argv(__name__, url), workers)
    left = scalar(url, "SELECT count(*) FROM pgqueuer")  # done jobs leave the table
    if left:
        raise BenchError(f"pgqueuer's workers exited with {left} jobs not done")
    return rate(jobs, seconds, batch_size=BATCH_SIZE)


async def _work(url: str) -> None:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    conn = await _connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    @qm.entrypoint("noop")  # type: ignore[untyped-decorator, misc]
    async def noop(job: Any) -> None:
        return None

    await qm.run(batch_size=BATCH_SIZE, mode=QueueExecutionMode.drain)
    await conn.close()


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1]))
