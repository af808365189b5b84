"""A wake-up call for the work loop: set from anywhere in the loop, waited on with a deadline.

A plain future per wait (not asyncio.wait_for on an Event), so a task cancelled while it
waits is cancelled for certain.
"""

from __future__ import annotations

import asyncio


class Waker:
    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._pending = False

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            _resolve(self._waiter)
        else:
            self._pending = True

    async def wait(self, timeout: float) -> None:
        """Return when woken (or already woken since the last wait), or after `timeout`."""
        if self._pending:
            self._pending = False
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
