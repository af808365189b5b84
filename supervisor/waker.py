"""A wake-up call for the work loops: set from anywhere in the loop, waited on with a deadline.
A wake releases every loop waiting; a loop that was not waiting returns at once from its next
wait, so nothing that happened between its last look and its wait is missed. Each loop waits
under its own name, so a wake it has seen (it was waiting, or it has waited since) does not
bring it back a second time.

A loop may wait in reserve (the control connection, a third lane's share of the hot path
while the node is busy): a wake reaches it only when no other loop is waiting to take what the
wake brings, and only such a wake brings it back at once when it was not waiting. On a node
running one job at a time, each outcome and each new job woke the control connection too (it
stopped listening and started again), and woke each lane twice (a flag shared by all loops
stayed set until every one had waited), all on the 2 cores the next job's enqueue and claim
needed (issue 17, idle latency).

A plain future per wait (not asyncio.wait_for on an Event), so a task cancelled while it
waits is cancelled for certain.
"""

from __future__ import annotations

import asyncio


class Waker:
    def __init__(self) -> None:
        # Waiting loops: each one's future, and whether it waits in reserve.
        self._waiting: dict[asyncio.Future[None], bool] = {}
        self._wakes = 0  # every wake so far
        self._unanswered = 0  # the wakes that found no loop waiting but those in reserve
        self._seen: dict[str, int] = {}  # each loop's count of the wakes it has seen

    def wake(self) -> None:
        self._wakes += 1
        front = [waiter for waiter, reserve in self._waiting.items() if not reserve]
        if not front:
            self._unanswered += 1
        for waiter in front or list(self._waiting):
            _resolve(waiter)

    async def wait(self, who: str, timeout: float, *, reserve: bool = False) -> None:
        """Return when woken (or woken since `who` last waited), or after `timeout`.
        `reserve`: only by a wake that found no loop waiting but those in reserve."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self.watch(who, waiter, reserve=reserve):
            return
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.unwatch(who, waiter)

    def watch(self, who: str, waiter: asyncio.Future[None], *, reserve: bool = False) -> bool:
        """Resolve `waiter` at the next wake that reaches `who` (`wait`'s terms), for a loop
        that waits on other things with the same future; False, registering nothing, when a
        wake since `who` last waited is unseen (it returns at once). `unwatch` when done."""
        count = self._unanswered if reserve else self._wakes
        if self._seen.get(who, 0) != count:  # a loop's first wait: any wake was unseen
            self._seen[who] = count
            return False
        self._waiting[waiter] = reserve
        return True

    def unwatch(self, who: str, waiter: asyncio.Future[None]) -> None:
        reserve = self._waiting.pop(waiter)
        self._seen[who] = self._unanswered if reserve else self._wakes


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
