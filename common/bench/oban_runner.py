"""The Oban for Python peer's own side: run by peer_oban.py on the Python 3.12+ venv it made,
by path (that venv has Oban and psycopg, not jobfleet, so this imports nothing of ours).

    python oban_runner.py fill JOBS CONNINFO    its schema, then JOBS no-op jobs in bulk
    python oban_runner.py work LIMIT CONNINFO   one Oban node running the queue until stopped
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from oban import Oban, job

QUEUE = "bench"
INSERT_BATCH = 1000


@job(queue=QUEUE)  # type: ignore[untyped-decorator, misc]
async def noop() -> None:
    return None


async def fill(jobs: int, conninfo: str) -> None:
    from oban.schema import install

    pool = await Oban.create_pool(dsn=conninfo)
    try:
        await install(pool)
        async with Oban(pool=pool) as client:
            for start in range(0, jobs, INSERT_BATCH):
                batch = [noop.new() for _ in range(min(INSERT_BATCH, jobs - start))]
                await client.enqueue_many(batch)
    finally:
        await pool.close()


async def work(limit: int, conninfo: str) -> None:
    pool: Any = await Oban.create_pool(dsn=conninfo, max_size=4)
    async with Oban(pool=pool, queues={QUEUE: limit}):
        await asyncio.Event().wait()  # the bench stops this process once every job ran


if __name__ == "__main__":
    command, count, dsn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    asyncio.run(fill(count, dsn) if command == "fill" else work(count, dsn))
