"""A wake-up call for the work loops: set from anywhere in the loop, waited on with a deadline.
A wake releases every loop waiting; one that was not waiting returns at once from its next
wait, so nothing that happened between its last look and its wait is missed.

A plain future per wait (not asyncio.wait_for on an Event), so a task cancelled while it
waits is cancelled for certain.
"""

from __future__ import annotations

import asyncio


class Waker:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self._pending = False

    def wake(self) -> None:
        self._pending = True
        for waiter in self._waiters:
            _resolve(waiter)

    async def wait(self, timeout: float) -> None:
        """Return when woken (or already woken since the last wait), or after `timeout`."""
        if self._pending:
            self._pending = False
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)
            if not self._waiters:
                self._pending = False


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
