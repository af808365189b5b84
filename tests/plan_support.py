"""Reading the plans PostgreSQL makes for jobfleet's statements, on a fresh `jobs` table of a
test's own (tests/test_plans.py, tests/test_console_plans.py): filled by COPY and never
analysed, each statement explained the way the supervisor runs it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from jobfleet.db import with_dbname
from jobfleet.migrate import migrate
from jobfleet.queries import sql
from jobfleet.supervisor.store import Statement, run_pipelined_blocking
from tests.conftest import CHECKOUT, _drop, _recreate

COPY_CHUNK = 50_000


@pytest.fixture
def plans_db(admin_url: str, worker_id: str) -> Iterator[str]:
    """A database of each test's own: a million rows must not slow the other tests' tables,
    and a table analysed by an earlier test keeps its statistics through TRUNCATE."""
    name = f"jobfleet_plans_{CHECKOUT}_{worker_id}"
    _recreate(admin_url, name)
    url = with_dbname(admin_url, name)
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
    yield url
    _drop(admin_url, name)


def fresh_fill(url: str, count: int) -> psycopg.Connection[Any]:
    """`count` ready jobs in a `jobs` table that has never been analysed, by COPY as
    enqueue_many and `enqueue --from-jsonl` write them; an autocommit connection to it."""
    conn = psycopg.connect(url, autocommit=True)
    line = b"noop\tdefault\t{}\n"
    with conn.cursor() as cur, cur.copy("COPY jobs (type, queue, payload) FROM STDIN") as copy:
        for start in range(0, count, COPY_CHUNK):
            copy.write(line * min(COPY_CHUNK, count - start))
    never_analysed = conn.execute(
        "SELECT NOT EXISTS (SELECT FROM pg_statistic WHERE starelid = 'jobs'::regclass)"
        " AND (SELECT last_analyze IS NULL AND last_autoanalyze IS NULL"
        "      FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass)"
    ).fetchone()
    assert never_analysed == (True,)
    return conn


def plan_of(conn: psycopg.Connection[Any], statement: Statement) -> dict[str, Any]:
    """The plan of `statement` run as the supervisor runs it."""
    query, params = statement
    [[row]] = run_pipelined_blocking(conn, [("EXPLAIN (FORMAT JSON) " + query, params)])
    plan = row[0]
    return dict((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])


def generic_plan_of(conn: psycopg.Connection[Any], statement: Statement) -> dict[str, Any]:
    """The generic plan the lanes run `statement` on (run_pipelined(..., prepared=True)): it
    is prepared as psycopg prepares it, under the same settings, and its plan read back with
    EXPLAIN EXECUTE; the claim it ran is rolled back."""
    query, params = statement
    # psycopg numbers the parameters in the order their names first appear.
    ordered = [params[name] for name in dict.fromkeys(re.findall(r"%\((\w+)\)s", query))]
    conn.execute("BEGIN")
    try:
        conn.execute(sql("generic_index_plans"))
        conn.execute(query, params, prepare=True).fetchall()
        row = conn.execute(
            "SELECT name, parameter_types::text[] FROM pg_prepared_statements"
            " WHERE NOT from_sql ORDER BY prepare_time DESC LIMIT 1"
        ).fetchone()
        assert row is not None, "the statement was not prepared"
        name, types = row
        # EXECUTE takes no bound parameters: the values go in as literals, cast as prepared.
        values = pgsql.SQL(", ").join(
            pgsql.SQL("{}::{}").format(pgsql.Literal(v), pgsql.SQL(t))  # type: ignore[arg-type]
            for v, t in zip(ordered, types, strict=True)
        )
        explain = pgsql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})")
        [[plan]] = conn.execute(explain.format(pgsql.Identifier(name), values))
    finally:
        conn.execute("ROLLBACK")
    return dict((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])


def executed_plan(conn: psycopg.Connection[Any], statement: Statement) -> dict[str, Any]:
    """The plan of the statement that reads `jobs` inside the function `statement` calls (the
    plain claim, jobfleet_claim), as the function runs it: PL/pgSQL plans it under the
    function's own settings, which EXPLAIN of the call does not show. Read with auto_explain
    (nested statements, sent back as a notice); the claim it ran is rolled back."""
    notices: list[str] = []

    def hear(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(diagnostic.message_primary or "")

    conn.add_notice_handler(hear)
    conn.execute("BEGIN")
    try:
        conn.execute("LOAD 'auto_explain'")
        for name, value in AUTO_EXPLAIN.items():
            conn.execute("SELECT set_config(%s, %s, true)", (f"auto_explain.{name}", value))
        query, params = statement
        conn.execute(query, params, prepare=True).fetchall()
    finally:
        conn.execute("ROLLBACK")
        conn.remove_notice_handler(hear)
    explained = [json.loads(n[n.index("{") :]) for n in notices if "plan:" in n]
    inside = [
        e["Plan"]
        for e in explained
        if e["Plan"]["Node Type"] != "Function Scan"
        and any(node.get("Relation Name") == "jobs" for node, _ in walk(e["Plan"]))
    ]
    assert len(inside) == 1, f"not one statement on jobs inside the call: {explained}"
    return dict(inside[0])


# auto_explain, for this transaction: every statement's plan, those run inside functions too,
# as a notice to the client.
AUTO_EXPLAIN = {
    "log_min_duration": "0",
    "log_nested_statements": "on",
    "log_format": "json",
    "log_level": "notice",
}


def walk(
    plan: dict[str, Any], parents: tuple[str, ...] = ()
) -> Iterator[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every node of the plan with the node types above it."""
    yield plan, parents
    for child in plan.get("Plans", []):
        yield from walk(child, (*parents, plan["Node Type"]))


def is_scan_of_jobs(node: dict[str, Any]) -> bool:
    return node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"


def scans_of_jobs(plan: dict[str, Any]) -> list[tuple[str, str | None, tuple[str, ...]]]:
    return [
        (node["Node Type"], node.get("Index Name"), parents)
        for node, parents in walk(plan)
        if is_scan_of_jobs(node)
    ]


def assert_keyed(
    plan: dict[str, Any], allowed: set[str], what: str, *, by_key: bool = True
) -> None:
    """Every read of `jobs` is an index scan on one of `allowed`, and, `by_key`, one with an
    index condition where it takes the primary key (a join could walk the whole of it
    instead; the pruner walks it in order on purpose); nothing is sorted."""
    kinds = [node["Node Type"] for node, _ in walk(plan)]
    assert not [k for k in kinds if "Sort" in k], f"{what}: a sort in {kinds}"
    scans = [(node, parents) for node, parents in walk(plan) if is_scan_of_jobs(node)]
    assert scans, f"{what}: no scan of jobs in {kinds}"
    for node, _ in scans:
        kind, index = node["Node Type"], node.get("Index Name")
        assert kind in ("Index Scan", "Index Only Scan"), f"{what}: {kind} on {index}"
        assert index in allowed, f"{what}: {kind} on {index}"
        if by_key and index == "jobs_pkey":
            assert "Index Cond" in node, f"{what}: the whole of jobs_pkey walked"
