"""jobfleet.coalesce: concurrent callers served together, each with its own answer."""

from __future__ import annotations

import asyncio

import pytest

from jobfleet.coalesce import Coalescer


def test_callers_that_arrive_while_a_batch_runs_go_together_in_the_next() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)  # the others arrive meanwhile
        return [i * 10 for i in items]

    async def main() -> list[int]:
        coalescer: Coalescer[int, int] = Coalescer(run)
        first = asyncio.create_task(coalescer.submit(0))
        while not batches:  # a lone caller's batch starts at once, waiting for nobody
            await asyncio.sleep(0)
        rest = await asyncio.gather(*(coalescer.submit(i) for i in range(1, 6)))
        return [await first, *rest]

    assert asyncio.run(main()) == [0, 10, 20, 30, 40, 50]
    assert batches == [[0], [1, 2, 3, 4, 5]]


def test_a_batch_is_never_larger_than_max_batch() -> None:
    sizes: list[int] = []

    async def run(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return items

    async def main() -> list[int]:
        coalescer: Coalescer[int, int] = Coalescer(run, max_batch=2)
        return await asyncio.gather(*(coalescer.submit(i) for i in range(7)))

    assert asyncio.run(main()) == list(range(7))
    assert max(sizes) == 2 and sum(sizes) == 7


def test_an_exception_in_the_answers_goes_to_its_caller_alone() -> None:
    async def run(items: list[int]) -> list[int | BaseException]:
        await asyncio.sleep(0)
        return [ValueError(f"bad {i}") if i == 2 else i for i in items]

    async def main() -> list[object]:
        coalescer: Coalescer[int, int] = Coalescer(run)
        return await asyncio.gather(
            *(coalescer.submit(i) for i in range(4)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert outcomes[:2] == [0, 1] and outcomes[3] == 3
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "bad 2"


def test_a_run_that_raises_fails_every_caller_of_its_batch_and_the_next_batch_runs() -> None:
    calls = 0

    async def run(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("database away")
        return items

    async def main() -> tuple[list[object], int]:
        coalescer: Coalescer[int, int] = Coalescer(run)
        first = await asyncio.gather(
            *(coalescer.submit(i) for i in range(3)), return_exceptions=True
        )
        return first, await coalescer.submit(9)

    first, later = asyncio.run(main())
    assert all(isinstance(outcome, RuntimeError) for outcome in first)  # one batch, all fail
    assert later == 9


def test_a_caller_that_goes_away_leaves_its_batch_to_finish_for_the_others() -> None:
    async def run(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    async def main() -> list[int]:
        coalescer: Coalescer[int, int] = Coalescer(run)
        first = asyncio.create_task(coalescer.submit(0))
        await asyncio.sleep(0)
        gone = asyncio.create_task(coalescer.submit(1))
        stays = asyncio.create_task(coalescer.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        return [await first, await stays]

    assert asyncio.run(main()) == [0, 2]


def test_a_wrong_count_of_answers_is_an_error_for_every_caller() -> None:
    async def run(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> int:
        return await Coalescer(run).submit(1)

    with pytest.raises(RuntimeError, match="got 0 answers"):
        asyncio.run(main())
