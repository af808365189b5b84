"""The crash-loop brake (supervisor/crash_loop.py): deaths in its window put the next spawn
off, deaths older than the window are forgotten."""

from __future__ import annotations

from jobfleet.supervisor.crash_loop import CRASH_WINDOW_SECONDS, CrashLoop


def test_a_few_deaths_do_not_slow_respawning() -> None:
    brake = CrashLoop("n1")
    for at in (1.0, 1.1, 1.2):
        brake.died(at)
    brake.spawned(1.3, desired=2)
    assert brake.may_spawn(1.3)


def test_deaths_past_the_allowance_put_the_next_spawn_off_more_each_time() -> None:
    brake = CrashLoop("n1")
    for n in range(5):  # two over max(3, desired)
        brake.died(1.0 + n / 100)
    brake.spawned(2.0, desired=2)
    first = brake.spawn_not_before - 2.0
    assert first > 0 and not brake.may_spawn(2.0) and brake.may_spawn(2.0 + first)
    brake.died(2.0 + first)
    brake.spawned(2.0 + first, desired=2)
    assert brake.spawn_not_before - (2.0 + first) > first


def test_deaths_older_than_the_window_are_forgotten() -> None:
    brake = CrashLoop("n1")
    for n in range(8):
        brake.died(1.0 + n / 100)
    later = 1.0 + CRASH_WINDOW_SECONDS + 1
    brake.spawned(later, desired=2)
    assert not brake.deaths and brake.may_spawn(later)


def test_a_larger_pool_is_allowed_as_many_deaths_as_it_has_children() -> None:
    brake = CrashLoop("n1")
    for n in range(6):
        brake.died(1.0 + n / 100)
    brake.spawned(2.0, desired=6)
    assert brake.may_spawn(2.0)
    brake.died(2.0)
    brake.spawned(2.0, desired=6)
    assert not brake.may_spawn(2.0)
