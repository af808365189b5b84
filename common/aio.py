"""The Python API for asyncio applications (FastAPI, aiohttp, ...): the same calls as
`jobfleet`, awaited, on a `psycopg.AsyncConnection`.

    async with await psycopg.AsyncConnection.connect(url) as aconn:
        async with aconn.transaction():
            order = await (await aconn.execute("INSERT INTO orders ... RETURNING id")).fetchone()
            job_id = await jobfleet.aio.enqueue(aconn, "resize", {"order": order[0]})
    result = await jobfleet.aio.wait(job_id, timeout=30)

enqueue and enqueue_many run in the caller's transaction and never commit, roll back or open
a connection. get, cancel, retry and wait take `conn=` (used as is) or open an asyncio
connection of their own for the call. What is checked and built is the very code of the
blocking API (jobfleet.enqueue's steps, jobfleet.admin's shapes); only the waiting differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import psycopg

from jobfleet import admin
from jobfleet.db import bounded_transaction_async, connection_options, database_url
from jobfleet.enqueue import (
    add_and_find,
    added_id,
    copy_blocks,
    copy_keys,
    existing_job,
    keys_left,
    many_jobs,
    one_job,
    row_values,
)
from jobfleet.errors import JobFailed, JobNotFound
from jobfleet.jobs import TERMINAL_STATES
from jobfleet.queries import sql
from jobfleet.settings import settings
from jobfleet.tolerant import AsyncOwnLoaders, tolerate_async
from jobfleet.tracing import current_trace_context
from jobfleet.wait import FIRST_POLL_SECONDS, MAX_POLL_SECONDS

AsyncConnection = psycopg.AsyncConnection[Any]

__all__ = ["cancel", "enqueue", "enqueue_many", "get", "retry", "wait"]


def _require_async(conn: Any, call: str) -> None:
    if not isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(
            f"jobfleet.aio.{call}() takes a psycopg.AsyncConnection; for a Connection use "
            f"jobfleet.{call}(...)"
        )


async def enqueue(conn: AsyncConnection, type: str, payload: Any = None, **options: Any) -> int:
    """`jobfleet.enqueue` in the caller's asyncio transaction; the same options and checks."""
    _require_async(conn, "enqueue")
    params = one_job(type, payload, options)
    add, find, find_params, holder = add_and_find(params)
    added = added_id(await (await conn.execute(sql(add), params, prepare=False)).fetchone())
    if added is not None:
        return added
    cur = await conn.execute(sql(find), find_params, prepare=False)
    return existing_job(await cur.fetchone(), holder)


async def enqueue_many(
    conn: AsyncConnection, type: str, payloads: Iterable[Any], **options: Any
) -> list[int]:
    """`jobfleet.enqueue_many` (COPY) in the caller's asyncio transaction."""
    _require_async(conn, "enqueue_many")
    payloads = list(payloads)
    checked, bodies = many_jobs(type, payloads, options)
    if not bodies:
        return []
    defaults = await (
        await conn.execute(sql("type_defaults"), {"type": type}, prepare=False)
    ).fetchone()
    now = None
    if checked.run_at is None:
        now = await (await conn.execute(sql("db_now"), prepare=False)).fetchone()
    row = await (
        await conn.execute(sql("reserve_job_ids"), {"n": len(bodies)}, prepare=False)
    ).fetchone()
    ids: list[int] = row[0] if row else []
    values = row_values(checked, defaults, now[0] if now else None, current_trace_context())
    keys = copy_keys(defaults, payloads)
    copying = sql("copy_keyed_jobs" if keys else "copy_jobs")
    async with conn.cursor() as cur, cur.copy(copying) as copy:
        for block in copy_blocks(type, values, ids, bodies, keys):
            await copy.write(block)
    if left := keys_left(ids, keys):
        await conn.execute(sql("key_copied_jobs"), {"type": type, "ids": left}, prepare=False)
    return ids


@asynccontextmanager
async def _connection(
    conn: AsyncConnection | None, call: str, *, one_transaction: bool = True
) -> AsyncIterator[Any]:
    """The caller's connection as is, or one of our own, which works through a
    transaction-mode pooler (jobfleet.db connection_options(pooler_safe=True)): with
    `one_transaction`, the call runs in one transaction that begins with jobfleet's timeouts;
    without, the caller begins its own (wait, one per look)."""
    if conn is not None:
        _require_async(conn, call)
        yield AsyncOwnLoaders(conn)  # its transaction, jobfleet's loaders (jobfleet.tolerant)
        return
    config = settings()
    url = await asyncio.to_thread(database_url, config)  # may start the embedded cluster
    own = await psycopg.AsyncConnection.connect(
        url, autocommit=True, **connection_options(config, pooler_safe=True)
    )
    tolerate_async(own)
    async with own:
        if one_transaction:
            async with bounded_transaction_async(own, config):
                yield own
        else:
            yield own


async def get(job_id: int, *, conn: AsyncConnection | None = None) -> dict[str, Any]:
    """`jobfleet.get`: the job with every attempt, in the `jobs show --json` shape."""
    async with _connection(conn, "get") as c:
        cur = await c.execute(sql("job_by_id"), {"id": job_id})
        row = await cur.fetchone()
        if row is None:
            raise JobNotFound(job_id)
        names = [d.name for d in cur.description]
        found = await c.execute(sql("attempts_of_job"), {"id": job_id})
        history = admin.attempt_shapes([d.name for d in found.description], await found.fetchall())
        return admin.job_shape(names, row, history)


async def cancel(job_id: int, *, conn: AsyncConnection | None = None) -> str:
    """`jobfleet.cancel`: "cancelled" (queued) or "running" (its node was asked to stop)."""
    async with _connection(conn, "cancel") as c:
        row = await (await c.execute(sql("cancel_job"), {"ids": [job_id]})).fetchone()
        if row is not None:
            return str(row[0])
        current = await (await c.execute(sql("job_state"), {"id": job_id})).fetchone()
        raise admin.cancel_refused(job_id, current)


async def retry(job_id: int, *, conn: AsyncConnection | None = None) -> str:
    """`jobfleet.retry`: a dead or cancelled job back to the queue; returns "queued"."""
    async with _connection(conn, "retry") as c:
        if (
            await (
                await c.execute(
                    sql("requeue_jobs"), admin.requeue_params(job_id, admin.RETRYABLE_STATES)
                )
            ).fetchone()
            is not None
        ):
            return "queued"
        current = await (await c.execute(sql("job_state"), {"id": job_id})).fetchone()
        raise admin.retry_refused(job_id, current)


async def wait(
    job_id: int, timeout: float | None = None, *, conn: AsyncConnection | None = None
) -> Any:
    """`jobfleet.wait`, without blocking the event loop: the result once the job succeeded;
    JobFailed for a dead or cancelled one, TimeoutError when `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = FIRST_POLL_SECONDS
    async with _connection(conn, "wait", one_transaction=False) as c:
        while True:
            # Our own connection: each look a transaction of its own (one held across the
            # sleeps would pin a pooler's server connection for the whole wait).
            async with bounded_transaction_async(c) if conn is None else nullcontext():
                cur = await c.execute(sql("job_wait_state"), {"id": job_id})
                row = await cur.fetchone()
            if row is None:
                raise JobNotFound(job_id)
            state, result, error = row
            if state in TERMINAL_STATES:
                if state != "succeeded":
                    raise JobFailed(job_id, state, error)
                return result
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is still {state} after {timeout:g} s")
                pause = min(pause, left)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)
