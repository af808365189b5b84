"""Concurrent callers of one asyncio process, served together: one round trip, one commit.

A caller's item waits while the batch before it runs, then goes in the next batch with
everything that arrived meanwhile. Nothing waits on purpose: a lone caller's batch starts at
once, and under load batches grow by themselves to what arrives during one run (the way
PostgreSQL's own commits share a WAL flush). This is what lets the HTTP API take a burst of
requests with a few statements instead of a few per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# A batch's run: one outcome per item, in order: its answer, or the exception its caller is
# to raise.
RunBatch = Callable[[list[Item]], Awaitable[Sequence[Answer | BaseException]]]


class Coalescer(Generic[Item, Answer]):
    """`await coalescer.submit(item)` returns the item's answer from `run`, which takes a
    batch of at most `max_batch` items and returns one outcome per item, in order (an
    exception in that list is raised to that item's caller alone). If `run` itself raises,
    every caller of that batch gets the exception.

    A batch runs in a task of its own: a caller that goes away (a client that disconnects)
    leaves the batch, and the others in it, to finish.
    """

    def __init__(self, run: RunBatch[Item, Answer], *, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run, self._max_batch = run, max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._serve(batch)
        finally:
            self._runner = None

    async def _serve(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(outcomes)} answers")
        except Exception as exc:
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
