"""Many jobs added with one statement, in the caller's asyncio transaction: what the HTTP API
runs for concurrent `POST /jobs` requests and for `POST /jobs:batch`.

Each job is `jobfleet.enqueue.one_job`'s checked parameters, so what is checked is the very
code of `enqueue`; the answers are `jobs show --json` shapes. A job with `unique_for` (and no
idempotency key) takes `enqueue_unique` on its own, as `enqueue` would.
"""

from __future__ import annotations

from typing import Any

import psycopg

from jobfleet import admin, aio
from jobfleet.enqueue import add_and_find, existing_job
from jobfleet.queries import sql

AsyncConnection = psycopg.AsyncConnection[Any]
# A job's answer: its shape, and whether it was added (False: its place was held).
Added = tuple[dict[str, Any], bool]

# enqueue_set's arrays, each from one parameter of `one_job` (and how it is sent).
_ARRAYS: tuple[tuple[str, str, type | None], ...] = (
    ("types", "type", None),
    ("queues", "queue", None),
    ("priorities", "priority", int),
    ("run_ats", "run_at", None),
    ("delays", "delay", float),
    ("max_attempts", "max_attempts", int),
    ("timeouts", "timeout", float),
    ("backoffs", "backoff", None),
    ("backoff_seconds", "backoff_seconds", float),
    ("payloads", "payload", None),
    ("idempotency_keys", "idempotency_key", None),
    ("trace_contexts", "trace_context", None),
)


def set_params(jobs: list[dict[str, Any]], lock_timeout: str | None = None) -> dict[str, Any]:
    """enqueue_set's parameters: one array per column, one element per job, and the bound on
    a wait for a held idempotency key (milliseconds as text; None: the session's). Numbers are
    sent as one Python type per array (an int beside a float would make psycopg pick the
    first's type for all)."""
    params: dict[str, Any] = {
        array: [_cast(job[name], cast) for job in jobs] for array, name, cast in _ARRAYS
    }
    params["lock_timeout"] = lock_timeout
    return params


def _cast(value: Any, cast: type | None) -> Any:
    return value if value is None or cast is None else cast(value)


def is_unique(job: dict[str, Any]) -> bool:
    """Whether the job is added by `enqueue_unique` (add_and_find decides, as for enqueue)."""
    return add_and_find(job)[0] == "enqueue_unique"


async def enqueue_set(conn: AsyncConnection, jobs: list[dict[str, Any]]) -> list[Added]:
    """Add the jobs in the caller's transaction; one answer per job, in order. Nothing is
    committed here."""
    answers: dict[int, Added] = {}
    plain = [i for i, job in enumerate(jobs) if not is_unique(job)]
    if plain:
        added = [jobs[i] for i in plain]
        cur = await conn.execute(sql("enqueue_set"), set_params(added), prepare=False)
        answers.update(zip(plain, await _answers(conn, added, cur), strict=True))
    for i, job in enumerate(jobs):
        if i not in answers:
            answers[i] = await _one(conn, job)
    return [answers[i] for i in range(len(jobs))]


async def enqueue_committed(
    conn: AsyncConnection, jobs: list[dict[str, Any]], lock_timeout: str | None
) -> list[Added]:
    """Add the jobs in a transaction of their own and commit it: one statement on an
    autocommit connection (no BEGIN, no COMMIT, nothing set on the session, so it is the same
    through a transaction-mode pooler). `lock_timeout` (milliseconds as text) bounds a wait
    on an idempotency key an open transaction holds. No job may have unique_for (is_unique):
    those wait on each other's keys, and take `enqueue_set` in a transaction of their own. A
    job whose idempotency key was taken is looked up after the commit: its holder committed
    before this statement could go on."""
    if any(is_unique(job) for job in jobs):
        raise ValueError("enqueue_committed takes no unique_for job")
    if not conn.autocommit:
        raise ValueError("enqueue_committed needs an autocommit connection")
    cur = await conn.execute(sql("enqueue_set"), set_params(jobs, lock_timeout), prepare=False)
    return await _answers(conn, jobs, cur)


async def _answers(
    conn: AsyncConnection, jobs: list[dict[str, Any]], cur: psycopg.AsyncCursor[Any]
) -> list[Added]:
    """The jobs' answers from enqueue_set's rows: a new job's shape is its row; a job that
    added nothing (its idempotency key was taken) is looked up (_one)."""
    names = [d.name for d in cur.description or ()]
    answers = []
    for job, row in zip(jobs, await cur.fetchall(), strict=True):
        if row[0] is not None:
            answers.append((admin.job_shape(names, row, []), True))
        else:
            answers.append(await _one(conn, job))
    return answers


async def _one(conn: AsyncConnection, job: dict[str, Any]) -> Added:
    """A job whose place may be held (a repeated idempotency key, or unique_for), as
    `enqueue` adds it; the holder's shape, with its attempts, when it is held."""
    add, find, find_params, holder = add_and_find(job)
    if add == "enqueue_unique":
        row = await (await conn.execute(sql(add), job, prepare=False)).fetchone()
        if row is not None:
            return await aio.get(int(row[0]), conn=conn), True
    cur = await conn.execute(sql(find), find_params, prepare=False)
    return await aio.get(existing_job(await cur.fetchone(), holder), conn=conn), False
