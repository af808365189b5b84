"""The LISTEN side of the control connection (supervisor/listener.py), on a real connection
and real NOTIFYs, its node's pool and lanes written down: what it claims itself, and when
it leaves the claim to the lanes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

import psycopg
import pytest

from jobfleet.settings import settings
from jobfleet.supervisor.database import ManagedConnection
from jobfleet.supervisor.listener import Listener
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.waker import Waker


class CountedWaker(Waker):
    def __init__(self) -> None:
        super().__init__()
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1
        super().wake()


class HeardWork:
    """What a Listener tells the node's lanes and asks of its pool, written down: whether the
    pool holds jobs and how many jobs are being claimed are set by the test; a lane step
    claims nothing, and waits for `step_may_end` when the test holds it back."""

    def __init__(self, *, holds_jobs: bool, claiming: int = 0, dry_after_step: bool) -> None:
        self.held = holds_jobs
        self.claiming = claiming
        self.dry_after_step = dry_after_step
        self.queue_dry = True
        self.waker = CountedWaker()
        self.told: list[bool] = []  # each more_work_may_exist's `wake`
        self.steps: list[str] = []  # the connection of each lane step begun
        self.ended = 0  # lane steps that ran to their end
        self.step_begun = asyncio.Event()
        self.step_may_end = asyncio.Event()
        self.step_may_end.set()

    def holds_jobs(self) -> bool:
        return self.held

    def claims_in_flight(self) -> int:
        return self.claiming

    def more_work_may_exist(self, *, wake: bool = True) -> None:
        self.told.append(wake)
        self.queue_dry = False
        if wake:
            self.waker.wake()

    async def lane_step(self, db: ManagedConnection) -> bool:
        self.steps.append(db.name)
        self.step_begun.set()
        await self.step_may_end.wait()
        self.queue_dry = self.dry_after_step
        self.ended += 1
        return True


async def hearing(db_url: str, work: HeardWork) -> tuple[Listener, asyncio.Future[None], Any]:
    """A Listener on a real connection, listening (`listen_until_woken`), and a connection to
    send notifications with."""
    db = ManagedConnection("control-test", db_url, settings())
    node = Node(name="listener-test", handlers={}, queues=None)
    listener = Listener(
        node,
        db,
        pool=cast(Any, work),
        lanes=cast(Any, work),
        outbox=cast(Any, None),
        renewal=cast(Any, None),
        wait_cap=60.0,
    )
    db.on_notify = listener.on_notification
    await db.run(lambda c: c.execute("LISTEN jobfleet_jobs"))
    listening = asyncio.ensure_future(listener.listen_until_woken(30))
    deadline = time.monotonic() + 30
    while not listener._hearing and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # until it waits on its socket
    assert listener._hearing, "the listener did not start waiting within 30 s"
    sender = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    return listener, listening, sender


@pytest.mark.parametrize(
    ("holds_jobs", "claiming", "dry_after_step", "expected"),
    [
        (False, 0, True, ([False], ["control-test"], 0)),  # claimed where heard, none left
        (False, 0, False, ([False], ["control-test"], 1)),  # jobs left: the lanes take them
        (True, 0, True, ([True], [], 1)),  # a node running jobs: its lanes claim
        (False, 2, True, ([True], [], 1)),  # a claim under way: the lanes claim
    ],
)
def test_work_heard_by_an_idle_node_is_claimed_by_the_connection_that_heard_it(
    db_url: str, holds_jobs: bool, claiming: int, dry_after_step: bool, expected: tuple[Any, ...]
) -> None:
    """A node holding no jobs, claiming none, claims announced work on the control connection
    at once (its server process is awake, no lane is woken first); the lanes are woken after
    that claim only when it left jobs behind. A busy node wakes its lanes, as before."""

    async def scenario() -> tuple[list[bool], list[str], int]:
        work = HeardWork(holds_jobs=holds_jobs, claiming=claiming, dry_after_step=dry_after_step)
        listener, listening, sender = await hearing(db_url, work)
        async with sender:
            await sender.execute("NOTIFY jobfleet_jobs, 'queue default'")
            await asyncio.wait_for(listening, 30)
        await listener.db.close()
        return work.told, work.steps, work.waker.wakes

    assert asyncio.run(scenario()) == expected


@pytest.mark.parametrize("stopped", [False, True])
def test_a_claim_of_heard_work_ends_unless_the_node_stops(db_url: str, stopped: bool) -> None:
    """The claim on the control connection is not cut off by a wake of the node's loops (its
    jobs could otherwise be held until their leases lapsed); the node's stop (the task's
    cancellation) cuts it off as it does a lane's claim."""

    async def scenario() -> tuple[int, bool]:
        work = HeardWork(holds_jobs=False, dry_after_step=True)
        work.step_may_end.clear()
        listener, listening, sender = await hearing(db_url, work)
        async with sender:
            await sender.execute("NOTIFY jobfleet_jobs, 'queue default'")
            await asyncio.wait_for(work.step_begun.wait(), 30)
            work.waker.wake()  # reaches the listen's reserve wait: nothing else waits
            for _ in range(20):  # turns of the loop, not time: the listen takes the wake
                await asyncio.sleep(0)
            if stopped:
                listening.cancel()
            else:
                work.step_may_end.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(listening, 30)
        await listener.db.close()
        return work.ended, listening.cancelled()

    assert asyncio.run(scenario()) == ((0, True) if stopped else (1, False))
