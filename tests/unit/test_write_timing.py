"""When the outbox is written (supervisor/write_timing.py): at once, after a share of the jobs'
run time, or, while jobs come back to back one at a time, together with the next few jobs'
outcomes, so that the writes' WAL flushes stay out of the enqueues' way; and when a lane writes
beside a write in flight.
"""

from __future__ import annotations

from typing import Any

import pytest

from jobfleet.supervisor.write_timing import (
    BACK_TO_BACK_LINGER_SECONDS,
    BACK_TO_BACK_SECONDS,
    WRITE_BESIDE_BUSY_MIN,
    WRITE_BESIDE_MIN,
    WRITE_LINGER_MAX_SECONDS,
    back_to_back,
    write_after,
    writes_beside,
)

NOW = 100.0


def _after(**given: Any) -> float:
    facts: dict[str, Any] = {
        "since": NOW,
        "latest": NOW,
        "only_successes": True,
        "accepting": True,
        "running": False,
        "mean_seconds": 0.0001,
        "news_at": 0.0,
        "back_to_back": False,
    }
    facts.update(given)
    return write_after(NOW, facts.pop("since"), facts.pop("latest"), **facts)


def test_a_node_that_runs_nothing_writes_its_last_outcomes_at_once() -> None:
    assert _after() == 0.0


def test_a_busy_node_lets_successes_wait_a_share_of_the_jobs_run_time() -> None:
    assert _after(running=True) == pytest.approx(0.00005)
    assert _after(running=True, mean_seconds=10.0) == pytest.approx(WRITE_LINGER_MAX_SECONDS)
    assert _after(running=True, since=NOW - 1.0) == 0.0  # waited long enough


def test_back_to_back_successes_wait_to_share_a_write_while_news_keeps_coming() -> None:
    # News of the next job came after the latest outcome: wait the whole linger.
    news = NOW - 0.001
    waited = _after(back_to_back=True, news_at=news, since=NOW - 0.003, latest=NOW - 0.002)
    assert waited == pytest.approx(BACK_TO_BACK_LINGER_SECONDS - 0.003)
    # The same while a child runs the next job.
    assert _after(
        back_to_back=True, news_at=news, since=NOW - 0.003, latest=NOW - 0.002, running=True
    ) == pytest.approx(BACK_TO_BACK_LINGER_SECONDS - 0.003)
    # Past the linger: now.
    since = NOW - BACK_TO_BACK_LINGER_SECONDS - 0.001
    assert _after(back_to_back=True, news_at=news, since=since, latest=NOW - 0.002) == 0.0


def test_back_to_back_successes_stop_waiting_when_no_news_follows_the_latest_outcome() -> None:
    news = NOW - 0.002
    waited = _after(back_to_back=True, news_at=news, since=NOW - 0.001, latest=NOW - 0.001)
    assert waited == pytest.approx(BACK_TO_BACK_SECONDS - 0.001)
    news = NOW - 0.007
    assert _after(back_to_back=True, news_at=news, since=NOW - 0.008, latest=NOW - 0.006) == 0.0


def test_old_news_ends_back_to_back() -> None:
    old = NOW - BACK_TO_BACK_LINGER_SECONDS - 0.001
    assert _after(back_to_back=True, news_at=old) == 0.0
    assert _after(back_to_back=True, news_at=old, running=True) == pytest.approx(0.00005)


def test_failures_and_a_draining_node_never_wait() -> None:
    news = NOW - 0.001
    assert _after(back_to_back=True, news_at=news, only_successes=False) == 0.0
    assert _after(back_to_back=True, news_at=news, accepting=False) == 0.0
    assert _after(running=True, mean_seconds=10.0, only_successes=False) == 0.0


def test_news_comes_back_to_back_to_an_idle_node_soon_after_its_latest_outcome() -> None:
    assert back_to_back(NOW, NOW - 0.001, running=False)
    assert back_to_back(NOW, NOW - BACK_TO_BACK_SECONDS, running=False)
    assert not back_to_back(NOW, NOW - BACK_TO_BACK_SECONDS - 0.001, running=False)
    assert not back_to_back(NOW, NOW - 0.001, running=True)  # a busy node
    assert not back_to_back(NOW, None, running=False)  # no outcome yet


def test_a_lane_writes_beside_a_write_in_flight_only_when_enough_waits() -> None:
    def beside(
        writing: int = 1, waiting: int = 0, dry: bool = False, limited: bool = False
    ) -> bool:
        return writes_beside(writing=writing, waiting=waiting, queue_dry=dry, limited=limited)

    # Nothing in flight: the ordinary write (write_after) decides, not this.
    assert not beside(writing=0, waiting=100_000, dry=True)
    # While claims go on, only a big backlog of outcomes.
    assert not beside(waiting=WRITE_BESIDE_BUSY_MIN - 1)
    assert beside(waiting=WRITE_BESIDE_BUSY_MIN)
    # Once the queue has run dry, the last outcomes sooner.
    assert not beside(waiting=WRITE_BESIDE_MIN - 1, dry=True)
    assert beside(waiting=WRITE_BESIDE_MIN, dry=True)
    assert beside(writing=2, waiting=WRITE_BESIDE_MIN, dry=True)
    # Never with limited types (counters locked in opposite orders).
    assert not beside(waiting=100_000, dry=True, limited=True)
