"""The `io` bench scenario's job types: I/O-bound jobs that only wait, one awaiting on the
worker's event loop, one blocking a thread. Named `bench_*` so that only the bench's own nodes,
which load this module, ever claim them.

The concurrency is the issue's (100 async jobs, 20 threads per worker); the bench gives the
peers the same numbers from here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobfleet.worker.context import JobContext
from jobfleet.worker.registry import handler

ASYNC_CONCURRENCY = 100
THREAD_CONCURRENCY = 20
ASYNC_TYPE = "bench_async_sleep"
THREAD_TYPE = "bench_thread_sleep"


def _seconds(payload: Any) -> float:
    return float(payload.get("seconds", 0.2)) if isinstance(payload, dict) else 0.2


@handler(ASYNC_TYPE, concurrency=ASYNC_CONCURRENCY)
async def async_sleep(payload: Any) -> None:
    """A call to a slow service, written the asyncio way."""
    await asyncio.sleep(_seconds(payload))


@handler(THREAD_TYPE, concurrency=THREAD_CONCURRENCY)
def thread_sleep(payload: Any) -> None:
    """The same call through a blocking client library: it holds a thread, not the GIL."""
    time.sleep(_seconds(payload))


# The `transactional` scenario's pair: two no-ops alike but for the transactional path (the
# job's completion in the worker's own transaction, committed per job), so the difference
# between their drain rates is what that path costs.
PLAIN_NOOP_TYPE = "bench_plain_noop"
TX_NOOP_TYPE = "bench_tx_noop"


@handler(PLAIN_NOOP_TYPE)
def plain_noop(payload: Any) -> None:
    return None


@handler(TX_NOOP_TYPE, transactional=True)
def tx_noop(payload: Any, ctx: JobContext) -> None:
    """Writes nothing through ctx.tx: what is measured is the path itself (a transaction,
    the fenced completion in it and a commit per job), not a user's writes."""
    return None
