"""Worker lifecycle hooks, declared in handler modules: what each worker process sets up after
the fork and before its first job (database pools, HTTP clients, a framework's setup), and
tears down when it leaves cleanly. Handler modules are imported by the supervisor before it
forks, so anything opened at import time would be shared by every worker: open it here.

    @jobfleet.worker.on_worker_start
    def open_pool():
        global pool
        pool = psycopg_pool.ConnectionPool(url)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[[], Any])

# A worker whose start hook raised leaves with this code, so its supervisor can say why.
EXIT_START_HOOK_FAILED = 71

_START: list[Callable[[], Any]] = []
_STOP: list[Callable[[], Any]] = []


def on_worker_start(fn: F) -> F:
    """Run `fn()` in each worker process after the fork, before its first job. If it raises,
    the traceback is logged and that worker is not used (the supervisor starts another, more
    slowly each time). An `async def` hook runs on the worker's event loop, the one its async
    handlers run on: open loop-bound clients (an aiohttp session, an async pool) there."""
    _START.append(fn)
    return fn


def on_worker_stop(fn: F) -> F:
    """Run `fn()` in each worker process that leaves cleanly (drained, recycled, or its
    supervisor gone), after its last job. Not after a kill: a killed process runs nothing.
    An `async def` hook runs on the worker's event loop."""
    _STOP.append(fn)
    return fn


def start_hooks() -> list[Callable[[], Any]]:
    return list(_START)


def stop_hooks() -> list[Callable[[], Any]]:
    return list(_STOP)
