"""The node's processes run with the garbage collector settled (supervisor/collector.py): what
existed at start is frozen and the young threshold raised, in the supervisor and in the
workers it forks, which inherit both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

import jobfleet
from jobfleet import collector
from tests.fleet_support import handler_module

REPORTS_GC = """
import gc
from jobfleet.worker import handler

@handler("gc_settings")
def gc_settings(payload):
    return {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}
"""


def test_workers_inherit_the_frozen_start_and_the_young_threshold(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Path
) -> None:
    env = handler_module(tmp_path, "reports_gc", REPORTS_GC)
    jobs = jobfleet.enqueue_many(conn, "gc_settings", [None] * 4)
    node = fleet("a", "--workers", "2", "--handlers", "reports_gc", "--burst", env=env)
    assert node.wait(60) == 0, node.log()[-2000:]
    results = [r[0] for r in conn.execute("SELECT result FROM jobs WHERE id = ANY(%s)", (jobs,))]
    assert len(results) == 4
    for result in results:
        assert result["threshold"][0] == collector.YOUNG_THRESHOLD, result
        # The modules, classes and functions made at start: thousands of objects.
        assert result["frozen"] > 10_000, result
