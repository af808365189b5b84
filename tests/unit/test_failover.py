"""The failover's pure parts: when the drill strikes, whether nodes came back in time, the
timeline's table, where PostgreSQL's programs are and the command the formation gives."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobfleet.cli.parser import failover_command
from jobfleet.drill.failover import Timeline, back_in_time, timeline_table
from jobfleet.drill.failover_drill import strike_due
from jobfleet.drill.formation import find_bindir

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_drill_strikes_once_a_quarter_of_the_time_and_of_the_jobs_is_behind() -> None:
    assert not strike_due(1.0, 10.0, {"queued": 10, "succeeded": 90})  # too early
    assert not strike_due(5.0, 10.0, {"queued": 70, "running": 10, "succeeded": 20})
    assert strike_due(5.0, 10.0, {"queued": 70, "running": 5, "succeeded": 20, "dead": 5})
    assert not strike_due(5.0, 10.0, None)  # the database did not answer


def test_nodes_are_back_in_time_only_if_each_claimed_within_the_bound() -> None:
    timeline = Timeline(down=at(0), since=at(4))
    timeline.first_claims = {"a": at(4.5), "b": at(11.9)}
    ok = back_in_time(timeline, ["a", "b"], 8.0)
    assert ok.ok and "7.9 s after promotion started" in ok.detail
    late = back_in_time(timeline, ["a", "b"], 7.0)
    assert not late.ok and "late or never: b" in late.detail
    never = back_in_time(timeline, ["a", "b", "c"], 8.0)
    assert not never.ok and "late or never: c" in never.detail
    assert timeline.back_after("c") is None


def test_the_timeline_reads_in_order_from_the_primary_going() -> None:
    timeline = Timeline(down=at(0), since=at(4), moments=[("new primary writable", at(4.2))])
    timeline.first_claims = {"drill-2": at(6.5), "drill-1": at(4.1)}
    lines = timeline_table(timeline).splitlines()
    assert [line.split("  ")[0] for line in lines[1:]] == [
        "primary gone",
        "promotion started",
        "first claim by drill-1",
        "new primary writable",
        "first claim by drill-2",
    ]
    assert "+6.50 s" in lines[-1] and "(+2.50 s)" in lines[-1]


def test_the_newest_postgresql_with_the_programs_is_chosen(tmp_path: Path) -> None:
    old, new, partial = tmp_path / "14/bin", tmp_path / "16/bin", tmp_path / "17/bin"
    for bindir in (old, new, partial):
        bindir.mkdir(parents=True)
    for bindir in (old, new):
        (bindir / "pg_ctl").touch()
        (bindir / "pg_basebackup").touch()
    (partial / "pg_ctl").touch()  # no pg_basebackup: not usable
    assert find_bindir([partial, new, old]) == new


def test_a_failover_command_must_say_something() -> None:
    assert failover_command("pg_autoctl perform failover") == "pg_autoctl perform failover"
    for bad in ("", "   ", "a\0b"):
        with pytest.raises(argparse.ArgumentTypeError, match="non-empty shell command"):
            failover_command(bad)
