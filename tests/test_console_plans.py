"""The console's reads stay index-driven at any size (issue 21): on a million-row `jobs`
table that has never been analysed, and again once it has, the jobs page (with each filter),
the newest id and the live tick read `jobs` only through an index, with no sort and no
sequential or bitmap scan. They run after index_plans, as the hot path does (without it a
state filter was a bitmap scan and a sort on the fresh table, and a read of every dead job
through jobs_dead on the analysed one). Plans, not timings: EXPLAIN does not run them."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from jobfleet.http.console import views
from jobfleet.queries import sql
from tests.plan_support import fresh_fill, plans_db, walk

__all__ = ["plans_db"]  # the fixture, from plan_support

ROWS = 1_000_000
NO_FILTER = {"state": None, "type": None, "queue": None, "node": None}


def plan(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The plan of a console read as the console runs it: after index_plans, in one
    transaction."""
    with conn.transaction():
        conn.execute(sql("index_plans"))
        row = conn.execute("EXPLAIN (FORMAT JSON) " + sql(name), params).fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def assert_index_only(found: dict[str, Any], allowed: set[str], what: str) -> None:
    kinds = [node["Node Type"] for node, _ in walk(found)]
    assert not [k for k in kinds if "Sort" in k and k != "Incremental Sort"], f"{what}: {kinds}"
    scans = [node for node, _ in walk(found) if node.get("Relation Name") == "jobs"]
    assert scans, f"{what}: no scan of jobs in {kinds}"
    for node in scans:
        kind, index = node["Node Type"], node.get("Index Name")
        assert kind in ("Index Scan", "Index Only Scan"), f"{what}: {kind} on {index}"
        assert index in allowed, f"{what}: {kind} on {index}"


def page_params(filters: dict[str, Any]) -> dict[str, Any]:
    window = views.page_window(None, max_id=ROWS)
    return {**NO_FILTER, **filters, "top": window.top, "floor": window.floor, "limit": 50}


@pytest.mark.parametrize("analysed", [False, True], ids=["never-analysed", "analysed"])
def test_console_reads_are_index_driven_at_a_million_rows(plans_db: str, analysed: bool) -> None:
    with fresh_fill(plans_db, ROWS) as conn:
        conn.execute("UPDATE jobs SET state = 'dead', finished_at = now() WHERE id % 1000 = 0")
        if analysed:
            conn.execute("ANALYZE jobs")
        what = "analysed" if analysed else "never analysed"
        assert_index_only(plan(conn, "console_max_id", {}), {"jobs_pkey"}, f"max id, {what}")
        for filters in (
            {},
            {"state": "dead"},
            {"state": "queued", "type": "noop"},
            {"queue": "elsewhere"},
            {"node": "n1"},
        ):
            found = plan(conn, "console_jobs_page", page_params(filters))
            assert_index_only(found, {"jobs_pkey"}, f"jobs page {filters}, {what}")
            pkey = [n for n, _ in walk(found) if n.get("Index Name") == "jobs_pkey"]
            assert all("Index Cond" in n for n in pkey), f"the whole of jobs_pkey: {filters}"
        live = plan(
            conn,
            "console_live_jobs",
            {"recent": 20, "running": 200, "watched": list(range(1, 2001, 7))},
        )
        assert_index_only(live, {"jobs_pkey", "jobs_leased"}, f"live tick, {what}")
