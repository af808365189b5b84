"""The work loops' wake-up call (supervisor/waker.py): who a wake reaches, and that a wake a
loop missed while busy brings it back once, not twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from jobfleet.supervisor.waker import Waker

LONG = 60.0  # a wait's timeout that never passes in these tests


async def settle() -> None:
    """Let every task that can run, run (a few rounds of the loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


def run(test: Callable[[Waker], Awaitable[None]]) -> None:
    asyncio.run(test(Waker()))


def waiting(waker: Waker, who: str, *, reserve: bool = False) -> asyncio.Task[None]:
    return asyncio.ensure_future(waker.wait(who, LONG, reserve=reserve))


async def done_now(waker: Waker, who: str, *, reserve: bool = False) -> bool:
    """Whether `who`'s next wait returns without a wake (it missed one); the wait is
    cancelled if not."""
    task = waiting(waker, who, reserve=reserve)
    await settle()
    if task.done():
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False


def test_a_wake_releases_every_loop_waiting_but_not_the_reserve() -> None:
    async def test(waker: Waker) -> None:
        assert not await done_now(waker, "lane-1")  # nothing since the start: it waits
        lanes = [waiting(waker, "lane-1"), waiting(waker, "lane-2")]
        control = waiting(waker, "control", reserve=True)
        await settle()
        waker.wake()
        await settle()
        assert all(lane.done() for lane in lanes)
        assert not control.done()
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
        # The reserve was waiting all along: that wake was not for it.
        assert not await done_now(waker, "control", reserve=True)

    run(test)


def test_a_wake_no_loop_is_waiting_for_reaches_the_reserve() -> None:
    async def test(waker: Waker) -> None:
        control = waiting(waker, "control", reserve=True)
        await settle()
        waker.wake()  # both lanes busy
        await settle()
        assert control.done()

    run(test)


def test_a_loop_busy_at_a_wake_returns_once_from_its_next_wait() -> None:
    async def test(waker: Waker) -> None:
        assert not await done_now(waker, "lane-1")
        assert not await done_now(waker, "lane-2")
        lane = waiting(waker, "lane-2")
        await settle()
        waker.wake()  # lane-1 busy, lane-2 waiting
        waker.wake()  # a second one before either ran
        await settle()
        assert lane.done()
        assert await done_now(waker, "lane-1")  # it missed them: back at once, once
        assert not await done_now(waker, "lane-1")
        assert not await done_now(waker, "lane-2")  # woken already: not a second time

    run(test)


def test_the_reserve_comes_back_only_for_a_wake_no_loop_answered() -> None:
    async def test(waker: Waker) -> None:
        assert not await done_now(waker, "control", reserve=True)
        lane = waiting(waker, "lane-1")
        await settle()
        waker.wake()  # answered by the lane, while the reserve was busy
        await settle()
        assert lane.done()
        assert not await done_now(waker, "control", reserve=True)
        waker.wake()  # nobody waiting: the reserve's to answer
        assert await done_now(waker, "control", reserve=True)
        assert not await done_now(waker, "control", reserve=True)

    run(test)


def test_a_loops_first_wait_returns_at_once_after_any_wake() -> None:
    """A loop's first look ran before its first wait: a wake since may be news to it."""

    async def test(waker: Waker) -> None:
        waker.wake()
        assert await done_now(waker, "lane-1")
        assert not await done_now(waker, "lane-1")

    run(test)


def test_a_wait_ends_after_its_timeout() -> None:
    async def test(waker: Waker) -> None:
        assert not await done_now(waker, "lane-1")
        await asyncio.wait_for(waker.wait("lane-1", 0.01), timeout=LONG)

    run(test)


def test_a_watched_future_is_resolved_by_the_wake_that_reaches_its_loop() -> None:
    """watch/unwatch: a loop that waits on other things too (the control connection's socket)
    with one future, on the terms of `wait`."""

    async def test(waker: Waker) -> None:
        loop = asyncio.get_running_loop()
        assert not await done_now(waker, "control", reserve=True)
        lane = waiting(waker, "lane-1")
        await settle()
        watched: asyncio.Future[None] = loop.create_future()
        assert waker.watch("control", watched, reserve=True)
        waker.wake()  # a lane was waiting: the reserve is left alone
        await settle()
        assert lane.done() and not watched.done()
        waker.wake()  # none but the reserve: it is resolved
        assert watched.done()
        waker.unwatch("control", watched)
        assert not await done_now(waker, "control", reserve=True)  # seen: not again

    run(test)


def test_a_wake_unseen_before_a_watch_registers_nothing() -> None:
    async def test(waker: Waker) -> None:
        loop = asyncio.get_running_loop()
        assert not await done_now(waker, "control", reserve=True)
        waker.wake()  # no loop waiting at all: the reserve's news
        watched: asyncio.Future[None] = loop.create_future()
        assert not waker.watch("control", watched, reserve=True)
        waker.wake()
        assert not watched.done()  # not registered: nothing to unwatch
        assert await done_now(waker, "control", reserve=True)  # that second wake is unseen

    run(test)
