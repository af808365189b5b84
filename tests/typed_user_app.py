"""A user's module calling jobfleet's public API with correct types (tests/user_typing.py runs
`mypy --strict` on a copy of it outside the repository, against the package as `make` and as
`pip install` install it). Never imported: it is only type-checked."""

from __future__ import annotations

from typing import Any, assert_type

import psycopg

import jobfleet
import jobfleet.aio
from jobfleet.worker import JobContext, handler, on_worker_start, on_worker_stop

pool: list[str] = []


@handler("resize", timeout=60, max_attempts=3)
def resize(payload: dict[str, Any]) -> dict[str, int]:
    return {"width": int(payload["width"])}


@handler("report", queue="reports", priority=5, backoff="fixed:10")
def report(payload: Any, ctx: JobContext) -> None:
    ctx.progress(0.5, "half way")
    if ctx.cancelled():
        return
    ctx.logger.info("job %s attempt %s", ctx.job_id, ctx.attempt)


assert_type(resize({"width": 3}), dict[str, int])


@on_worker_start
def open_pool() -> None:
    pool.append("open")


@on_worker_stop
def close_pool() -> None:
    pool.clear()


def place_order(url: str) -> Any:
    with psycopg.connect(url) as conn:
        job_id = jobfleet.enqueue(
            conn, "resize", {"width": 3}, priority=5, delay=10, idempotency_key="k"
        )
        assert_type(job_id, int)
        assert_type(jobfleet.enqueue_many(conn, "resize", [{"width": 1}]), list[int])
        assert_type(jobfleet.get(job_id, conn=conn), dict[str, Any])
    assert_type(jobfleet.cancel(job_id), str)
    assert_type(jobfleet.retry(job_id), str)
    try:
        return jobfleet.wait(job_id, timeout=30)
    except jobfleet.JobFailed as failed:
        raise RuntimeError(str(failed)) from failed
    except (jobfleet.JobNotFound, jobfleet.JobfleetError, TimeoutError):
        return None


async def place_order_async(url: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url) as aconn:
        async with aconn.transaction():
            job_id = await jobfleet.aio.enqueue(aconn, "resize", {"width": 3}, queue="q")
            assert_type(job_id, int)
            ids = await jobfleet.aio.enqueue_many(aconn, "resize", [{"width": 1}])
            assert_type(ids, list[int])
        assert_type(await jobfleet.aio.get(job_id, conn=aconn), dict[str, Any])
    assert_type(await jobfleet.aio.cancel(job_id), str)
    assert_type(await jobfleet.aio.retry(job_id), str)
    return await jobfleet.aio.wait(job_id, timeout=30)
