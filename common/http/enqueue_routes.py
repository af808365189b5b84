"""`POST /jobs` and `POST /jobs:batch`: what bursts of clients send, served without a thread
or a transaction per request.

Both run on the event loop with an asyncio pool. The keys of concurrent requests are looked
up together (one query), and the jobs of concurrent `POST /jobs` go in one transaction with
one statement (jobfleet.batch_enqueue) and one commit: a lone request runs at once, and a
burst costs the database a few statements per batch instead of five round trips and a WAL
flush per request. A statement error in a batch fails no request but its own: the batch is
rolled back and each of its jobs is added alone. A client is answered 201 only after its
job's batch committed.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import psycopg.errors
from fastapi import Depends, FastAPI, Response
from psycopg_pool import AsyncConnectionPool

from jobfleet import apikeys, metrics
from jobfleet.apikeys import ApiKey
from jobfleet.batch_enqueue import Added, enqueue_committed, enqueue_set, is_unique
from jobfleet.coalesce import Coalescer
from jobfleet.db import bounded_transaction_async, timeouts
from jobfleet.enqueue import one_job
from jobfleet.http.access import Credentials, check_rate, check_scope, unauthorized
from jobfleet.http.errors import ApiError, responses
from jobfleet.http.limits import AddressLimit
from jobfleet.http.pools import pool_arguments
from jobfleet.http.schemas import CreatedJobs, Job, NewJob, NewJobs
from jobfleet.settings import Settings
from jobfleet.tolerant import tolerate_async

POOL_MAX = 4
# A pooled connection unused for longer is checked before it is handed out.
CHECK_AFTER_IDLE_SECONDS = 1.0
# A batch of POST /jobs requests: at most this many jobs in one statement.
MAX_BATCH = 500


class Enqueuer:
    """The asyncio pool and the two coalescers (keys, jobs) of one HTTP process: one set per
    event loop that serves the app (a server has one; tests may run an app in several)."""

    def __init__(self, url: str, config: Settings, *, pool_wait: float) -> None:
        self.url, self.config, self.pool_wait = url, config, pool_wait
        self._lanes: dict[asyncio.AbstractEventLoop, _Lane] = {}

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        lane = self._lanes[loop] = _Lane(self.url, self.config, self.pool_wait)
        await lane.pool.open(wait=False)  # the API comes up even while the database is away
        try:
            yield
        finally:
            del self._lanes[loop]
            await lane.pool.close()

    @property
    def lane(self) -> _Lane:
        return self._lanes[asyncio.get_running_loop()]


class _Lane:
    def __init__(self, url: str, config: Settings, pool_wait: float) -> None:
        self.config, self.pool_wait = config, pool_wait
        self.pool = AsyncConnectionPool(
            url,
            **pool_arguments(config, max_size=POOL_MAX, wait=pool_wait),
            check=self._check,
            configure=_configure,
            reset=self._used,
            name="jobfleet-enqueue",
        )
        # What a statement may wait on a lock (an idempotency key an open transaction holds).
        self.lock_timeout = str(timeouts(config)["statement_timeout"])
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self.keys: Coalescer[str, ApiKey | None] = Coalescer(self._verify, max_batch=MAX_BATCH)
        self.jobs: Coalescer[dict[str, Any], Added] = Coalescer(self._add, max_batch=MAX_BATCH)

    async def take_token(self, key: ApiKey) -> apikeys.TokenTaken:
        async with self.pool.connection(timeout=self.pool_wait) as conn:
            return await apikeys.take_token_async(conn, key)

    async def add(self, job: dict[str, Any]) -> Added:
        """One POST /jobs request's job, in the batch of the requests beside it; counted when
        added (the route and jobfleet.http.fast_enqueue both add this way)."""
        shape, created = await self.jobs.submit(job)
        if created:
            metrics.count_enqueued(shape["type"], shape["queue"])
        return shape, created

    async def add_all(self, jobs: list[dict[str, Any]]) -> list[Added]:
        """Every job or none, in one transaction (POST /jobs:batch)."""
        async with (
            self.pool.connection(timeout=self.pool_wait) as conn,
            bounded_transaction_async(conn, self.config),
        ):
            return await enqueue_set(conn, jobs)

    async def _verify(self, presented: list[str]) -> list[ApiKey | None]:
        async with self.pool.connection(timeout=self.pool_wait) as conn:
            return await apikeys.verify_keys_async(conn, presented)

    async def _commit(self, jobs: list[dict[str, Any]]) -> list[Added]:
        if any(is_unique(job) for job in jobs):  # they wait on each other's keys
            return await self.add_all(jobs)
        async with self.pool.connection(timeout=self.pool_wait) as conn:
            return await enqueue_committed(conn, jobs, self.lock_timeout)

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A connection idle for a while is checked before use (a database restarted since
        leaves it dead); one just used is not: under load a check would be one more round
        trip per batch."""
        if time.monotonic() - self._last_used.get(conn, 0.0) > CHECK_AFTER_IDLE_SECONDS:
            await AsyncConnectionPool.check_connection(conn)

    async def _used(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._last_used[conn] = time.monotonic()

    async def _add(self, jobs: list[dict[str, Any]]) -> Sequence[Added | BaseException]:
        try:
            return await self._commit(jobs)
        except psycopg.Error as exc:
            if len(jobs) == 1 or not statement_error(exc):
                raise  # the database (or the connection) is away: every request learns it
        # One job's statement error must not fail the others: each alone.
        answers: list[Added | BaseException] = []
        for job in jobs:
            try:
                answers.extend(await self._commit([job]))
            except Exception as exc:
                answers.append(exc)
        return answers


def statement_error(exc: psycopg.Error) -> bool:
    """Whether an error is one statement's (a constraint, a lock waited on past the statement
    timeout), not the database's or the connection's: a batch that meets one is retried job
    by job, and only the job that causes it fails."""
    if isinstance(exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return True
    return not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    tolerate_async(conn)


def enqueue_routes(
    app: FastAPI,
    enqueuer: Enqueuer,
    config: Settings,
    *,
    bearer_dep: Any,
    gate_dep: Any,
    caller_trace_dep: Any,
    failures: AddressLimit,
) -> None:
    limit = config.max_payload_bytes

    async def can_enqueue(credentials: Credentials = bearer_dep, address: str = gate_dep) -> None:
        """The key is good, has the `enqueue` scope and is within its rate: 401, 403, 429 in
        that order, before the body is read (jobfleet.http.app's `access`, coalesced)."""
        assert credentials is not None  # the gate refused a request without one
        key = await enqueuer.lane.keys.submit(credentials.credentials)
        if key is None:
            failures.failed(address)
            raise unauthorized(credentials)
        check_scope(key, "enqueue")
        if key.rate_per_second is not None:
            check_rate(key, await enqueuer.lane.take_token(key))

    enqueue_dep = Depends(can_enqueue)

    @app.post(
        "/jobs",
        response_model=Job,
        status_code=201,
        responses={
            200: {
                "model": Job,
                "description": "The idempotency key was used, or a unique job (unique_for) "
                "holds its place: the existing job",
            },
            **responses(400, 401, 403, 413, 422, 429, 503),
        },
        summary="Enqueue a job",
        dependencies=[enqueue_dep],
    )
    async def create_job(
        new: NewJob,
        response: Response,
        trace: dict[str, str] | None = caller_trace_dep,
    ) -> dict[str, Any]:
        job = one_job(new.type, new.payload, new.options(), limit, trace)
        shape, created = await enqueuer.lane.add(job)
        if not created:
            response.status_code = 200
        return shape

    @app.post(
        "/jobs:batch",
        response_model=CreatedJobs,
        status_code=201,
        responses=responses(400, 401, 403, 413, 422, 429, 503),
        summary="Enqueue many jobs in one transaction (all or none)",
        dependencies=[enqueue_dep],
    )
    async def create_jobs(
        batch: NewJobs, trace: dict[str, str] | None = caller_trace_dep
    ) -> CreatedJobs:
        jobs = [_checked(index, new, limit, trace) for index, new in enumerate(batch.jobs)]
        added = await enqueuer.lane.add_all(jobs)
        for shape, created in added:
            if created:
                metrics.count_enqueued(shape["type"], shape["queue"])
        return CreatedJobs(
            ids=[shape["id"] for shape, _ in added], created=[created for _, created in added]
        )


def _checked(index: int, new: NewJob, limit: int, trace: dict[str, str] | None) -> dict[str, Any]:
    """One job of a batch, checked; a bad one is a 422 naming it (nothing is written)."""
    try:
        return one_job(new.type, new.payload, new.options(), limit, trace)
    except ValueError as exc:
        option = getattr(exc, "option", None)
        where = f"body.jobs.{index}" + (f".{option}" if option else "")
        raise ApiError(422, "invalid", f"jobs[{index}]: {exc}", field=where) from None
