"""The hot path's plans do not depend on statistics (issue 17).

Users bulk-enqueue and start their supervisors at once, long before autovacuum analyses the
table. Each test fills a fresh `jobs` table with COPY, never analyses it (autovacuum is off
for it here, so it cannot step in mid-test), and reads the plans PostgreSQL makes for the
statements the supervisor runs, the way it runs them (supervisor/store.py, run_pipelined):
the claim walks jobs_ready in its order and stops after the batch; the fenced writes, lease
renewal and the reaper enter by key; the looks for work, the pruner, the gauges and bulk
maintenance's batches read their indexes, never the table. Plans, not timings: EXPLAIN does
not run the statements.

Each size also checks that the trap is there without the hot path's planner settings (the
same claim, run alone, plans a sort of the backlog), so the test cannot pass by filling a
table the planner would have handled anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from jobfleet.jobs import AttemptResult
from jobfleet.queries import sql
from jobfleet.supervisor.outbox import progress_statement
from jobfleet.supervisor.store import (
    Statement,
    claim_limited_statements,
    claim_statement,
    failure_statement,
    release_statement,
    success_statement,
)
from tests.plan_support import (
    COPY_CHUNK,
    assert_keyed,
    executed_plan,
    fresh_fill,
    generic_plan_of,
    is_scan_of_jobs,
    plan_of,
    plans_db,
    scans_of_jobs,
    walk,
)

__all__ = ["plans_db"]  # the fixture, from plan_support

# The example handlers' types: a node that runs them all claims with this list.
TYPES = ["noop", "echo", "sleep", "cpu", "fail", "flaky", "crash", "progress"]
# Batches as the supervisor makes them: a claim sized to free room, writes as big as the rate
# makes them (2000 ids is where complete_batch seq-scanned 100k never-analysed rows).
BATCHES = (500, 2000)


def assert_claim_walks_ready_index(
    plan: dict[str, Any], what: str, *, types_in_index: bool
) -> None:
    """The claim's pick is Limit <- LockRows <- Index Scan on jobs_ready: the index walked in
    its order, stopped after the batch; then the claimed rows by primary key. With
    `types_in_index`, the claim's types are an index condition: other types' jobs are passed
    over on the index entries, never read from the table (0020_ready_types.sql)."""
    assert_keyed(plan, {"jobs_ready", "jobs_pkey"}, what)
    ready = [
        (n, p) for n, p in walk(plan) if is_scan_of_jobs(n) and n["Index Name"] == "jobs_ready"
    ]
    assert len(ready) == 1 and ready[0][1][-2:] == ("Limit", "LockRows"), f"{what}: {ready}"
    if types_in_index:
        condition = ready[0][0].get("Index Cond", "")
        assert "type" in condition, f"{what}: the types not in the index condition: {condition}"


def types_in_index(conn: psycopg.Connection[Any], *, equal: bool) -> bool:
    """Whether the claim's types are an index condition on jobs_ready: a type equal to a value
    always; a list of types (`= ANY`) from PostgreSQL 17 on, which keeps the index order with
    it (earlier versions check it on the row, as before version 20 of the schema)."""
    return equal or conn.info.server_version >= 170000


def assert_claim_walks_each_queue(plan: dict[str, Any], what: str, *, types_in_index: bool) -> None:
    """A node serving a few queues: its pick walks jobs_ready_by_queue within each queue (an
    index condition on the queue, and with `types_in_index` on the types too) under Limit <-
    LockRows, once a queue, and sorts only what those bounded walks brought; then the
    claimed rows by primary key."""
    scans = [(n, p) for n, p in walk(plan) if is_scan_of_jobs(n)]
    by_queue = [(n, p) for n, p in scans if n.get("Index Name") == "jobs_ready_by_queue"]
    assert len(by_queue) == 1, f"{what}: {[n.get('Index Name') for n, _ in scans]}"
    node, parents = by_queue[0]
    condition = node.get("Index Cond", "")
    assert node["Node Type"] == "Index Scan" and "queue" in condition, what
    if types_in_index:
        assert "type" in condition, f"{what}: the types not in the index condition: {condition}"
    assert parents[-2:] == ("Limit", "LockRows"), f"{what}: {parents}"
    for node, _ in scans:
        kind, index = node["Node Type"], node.get("Index Name")
        assert kind == "Index Scan" and "Index Cond" in node, f"{what}: {kind} on {index}"
        assert index in ("jobs_ready_by_queue", "jobs_pkey"), f"{what}: {index}"
    # A sort only ever above a Limit: of at most a batch a queue, never of the backlog.
    for _, parents in scans:
        if "Sort" in parents:
            after = parents[len(parents) - parents[::-1].index("Sort") :]
            assert "Limit" in after, f"{what}: a sort of a walk of jobs: {parents}"


def plain_claims(limit: int) -> list[tuple[str, Statement, int | None]]:
    """The claims of unlimited types (jobfleet_claim: the UPDATE is in a function), with the
    number of queues the node serves when it walks them one by one (None: jobs_ready)."""

    def claim(types: list[str], queues: list[str] | None) -> Statement:
        return claim_statement(
            holder="n/1", types=types, queues=queues, limit=limit, lease_seconds=30
        )

    five = [f"q{n}" for n in range(4)] + ["default"]
    return [
        ("claim, every type", claim(TYPES, None), None),
        # A type with nothing ready beside a backlog of others (an async type's claim): the
        # others are passed over in the index.
        ("claim, a type with nothing ready", claim(["async_sleep"], None), None),
        ("claim, one type and queue", claim(["noop"], ["default"]), 1),
        ("claim, two queues", claim(TYPES, ["mail", "default"]), 2),
        ("claim, five queues", claim(TYPES, five), None),
    ]


def assert_plain_claim(
    plan: dict[str, Any], queues: int | None, what: str, *, types_in_index: bool
) -> None:
    if queues is None:
        assert_claim_walks_ready_index(plan, what, types_in_index=types_in_index)
    else:
        assert_claim_walks_each_queue(plan, what, types_in_index=types_in_index)


def limited_claim(limit: int) -> Statement:
    return claim_limited_statements(
        holder="n/1", type="noop", queues=None, limit=limit, lease_seconds=30
    )[0]


def keyed_writes(size: int) -> list[tuple[str, Statement, set[str]]]:
    """The fenced writes and lease renewal for a batch of `size` held jobs, and the reaper."""
    ids = range(1, size + 1)
    now = datetime.now(UTC)
    failures = [
        AttemptResult(i, 1, "failed", error="boom", pid=7, started_at=now, finished_at=now)
        for i in ids
    ]
    pkey = {"jobs_pkey"}
    return [
        ("complete_batch", success_statement("n", [(i, 1, "null", 7, 1, 2) for i in ids]), pkey),
        ("fail_batch", failure_statement("n", failures), pkey),
        ("release_batch", release_statement([(i, 1) for i in ids]), pkey),
        ("save_progress", progress_statement({(i, 1): (0.5, "half") for i in ids}), pkey),
        # Bulk maintenance's batches (jobfleet.bulk): the one-job statements over a batch.
        ("cancel_job", (sql("cancel_job"), {"ids": list(ids)}), pkey),
        (
            "requeue_jobs",
            (sql("requeue_jobs"), {"states": ["dead"], "all": False, "ids": list(ids)}),
            # The dead-letter index whole while it is smaller than the batch's key lookups
            # (the planner reads index sizes, analysed or not); by key once it is not.
            {"jobs_pkey", "jobs_dead"},
        ),
        (
            "renew_leases",
            (
                sql("renew_leases"),
                {"ids": list(ids), "holder": "n/1", "lease_seconds": 30, "fresh_seconds": 1},
            ),
            pkey,
        ),
        ("cancels_asked", (sql("cancels_asked"), {"ids": list(ids), "holder": "n/1"}), pkey),
        (
            "reap_lost_attempts, earlier runs too",
            reaper(earlier_runs=True),
            {"jobs_leased", "jobs_pkey"},
        ),
        ("reap_lost_attempts", reaper(earlier_runs=False), {"jobs_leased", "jobs_pkey"}),
    ]


def reaper(*, earlier_runs: bool) -> Statement:
    params = {"overdue": 0, "node": "n", "holder": "n/1", "limit": 1000}
    return sql("reap_lost_attempts"), {**params, "earlier_runs": earlier_runs}


def assert_reaper_stops_at_the_first_live_lease(plan: dict[str, Any], what: str) -> None:
    """The periodic reaper's walk of jobs_leased is bounded by the expiry (an index
    condition), so it ends at the first lease not yet expired: never every held job."""
    leased = [n for n, _ in walk(plan) if is_scan_of_jobs(n) and n["Index Name"] == "jobs_leased"]
    assert len(leased) == 1, f"{what}: {leased}"
    assert "lease_expires_at <" in leased[0].get("Index Cond", ""), f"{what}: {leased[0]}"


def looks_and_upkeep() -> list[tuple[str, Statement, set[str]]]:
    """An idle node's and a burst node's looks for work, the pruner and the gauges."""
    types_and_queues = {"types": TYPES, "queues": None}
    return [
        (
            "soonest_scheduled",
            (sql("soonest_scheduled"), types_and_queues),
            {"jobs_ready", "jobs_ready_by_queue"},
        ),
        (
            "burst_nothing_elsewhere",
            (sql("burst_nothing_elsewhere"), {**types_and_queues, "holder": "n/1", "name": "n"}),
            {"jobs_ready", "jobs_leased"},
        ),
        (
            "prune_finished",
            (sql("prune_finished"), {"keep": 3600, "limit": 1000, "after": 0}),
            {"jobs_pkey"},
        ),
        (
            "queue_gauges",
            (sql("queue_gauges"), {}),
            {"jobs_ready", "jobs_ready_by_queue", "jobs_leased", "jobs_dead"},
        ),
        (
            "pick_jobs, queued of a type",
            (sql("pick_jobs"), {"state": "queued", "type": "noop", "queue": None, "limit": 1000}),
            {"jobs_ready", "jobs_ready_by_queue"},
        ),
        (
            "pick_jobs, dead of a queue",
            (sql("pick_jobs"), {"state": "dead", "type": None, "queue": "q", "limit": 1000}),
            {"jobs_dead"},
        ),
        ("limit_recount", (sql("limit_recount"), {"types": ["noop"]}), {"jobs_leased"}),
        ("type_list", (sql("type_list"), {}), {"jobs_leased"}),
    ]


@pytest.mark.parametrize("rows", [10_000, 1_000_000], ids=["10k", "1M"])
def test_hot_path_plans_are_index_driven_on_a_never_analysed_table(
    plans_db: str, rows: int
) -> None:
    with fresh_fill(plans_db, rows) as conn:
        # The trap is set: the same claim, in its function stripped of its settings (for this
        # transaction only), sorts the backlog or reads the table other than by an index's
        # conditions (a sequential or bitmap scan).
        with psycopg.connect(plans_db) as bare:
            bare.execute(
                "ALTER FUNCTION jobfleet_claim(text, text[], text[], integer, float8) RESET ALL"
            )
            stripped = executed_plan(bare, plain_claims(500)[0][1])
            kinds = {node["Node Type"] for node, _ in walk(stripped)}
            assert kinds & {"Sort", "Seq Scan", "Bitmap Heap Scan"}, kinds

        assert_index_driven(conn, "never analysed")
        # And the same plans once autovacuum has analysed it: statistics change nothing (a
        # join here made the claim's update a walk of the whole primary key at 2000).
        conn.execute("ANALYZE jobs")
        assert_index_driven(conn, "analysed")


def assert_index_driven(conn: psycopg.Connection[Any], table: str) -> None:
    for size in BATCHES:
        for what, statement, queues in plain_claims(size):
            plan = executed_plan(conn, statement)
            in_index = types_in_index(conn, equal=False)
            assert_plain_claim(plan, queues, f"{what}, {size}, {table}", types_in_index=in_index)
        what, statement = "claim of a limited type", limited_claim(size)
        in_index = types_in_index(conn, equal=True)
        assert_claim_walks_ready_index(
            plan_of(conn, statement), f"{what}, {size}, {table}", types_in_index=in_index
        )
        generic = generic_plan_of(conn, statement)
        assert_claim_walks_ready_index(
            generic, f"{what}, generic plan, {size}, {table}", types_in_index=in_index
        )
        for what, statement, allowed in keyed_writes(size):
            assert_keyed(plan_of(conn, statement), allowed, f"{what}, {size}, {table}")
        periodic = plan_of(conn, reaper(earlier_runs=False))
        assert_reaper_stops_at_the_first_live_lease(periodic, f"reaper, {size}, {table}")
    for what, statement, allowed in looks_and_upkeep():
        assert_keyed(plan_of(conn, statement), allowed, f"{what}, {table}", by_key=False)


def test_the_keyed_claim_walks_keys_by_index_on_a_never_analysed_table(plans_db: str) -> None:
    """A type with a limit key (issue 19): 200k queued jobs over 1,000 keys, by COPY, never
    analysed. The claim walks the keys by jobs_keyed (one descent each) and takes each key's
    jobs from it in order, never reading the backlog; no sort anywhere."""
    conn = psycopg.connect(plans_db, autocommit=True)
    with conn, conn.cursor() as cur:
        columns = "type, queue, payload, limit_key"
        with cur.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for start in range(0, 200_000, COPY_CHUNK):
                copy.write(
                    "".join(
                        f'charge\tdefault\t{{"customer": "c{i % 1000}"}}\tc{i % 1000}\n'
                        for i in range(start, start + COPY_CHUNK)
                    )
                )
        conn.execute(
            "INSERT INTO type_limits (type, max_running, rate_count, rate_seconds, limit_key,"
            " turn) VALUES ('charge', 5, 100, 60, 'customer', 'c500')"
        )
        for table in ("never analysed", "analysed"):
            for size in BATCHES:
                lock, claim, state = claim_limited_statements(
                    holder="n/1",
                    type="charge",
                    queues=None,
                    limit=size,
                    lease_seconds=30,
                    keyed=True,
                )
                # As planned for the call, and the generic plan the lanes run it on.
                for how, plan in (
                    ("", plan_of(conn, claim)),
                    (", generic plan", generic_plan_of(conn, claim)),
                ):
                    what = f"keyed claim{how}, {size}, {table}"
                    kinds = [node["Node Type"] for node, _ in walk(plan)]
                    assert not [k for k in kinds if "Sort" in k], f"{what}: a sort in {kinds}"
                    # The walk of the keys reads the index alone (Index Only Scan) where it can.
                    for kind, index, _ in scans_of_jobs(plan):
                        assert kind in ("Index Scan", "Index Only Scan"), f"{what}: {kind}"
                        assert index in ("jobs_keyed", "jobs_pkey"), f"{what}: {index}"
                    picks = [p for _, index, p in scans_of_jobs(plan) if index == "jobs_keyed"]
                    assert any(p[-2:] == ("Limit", "LockRows") for p in picks), f"{what}: {picks}"
                for statement in (lock, state):
                    kinds = {node["Node Type"] for node, _ in walk(plan_of(conn, statement))}
                    assert not [k for k in kinds if "Sort" in k or "Seq" in k], (what, kinds)
            rekey = (sql("rekey_queued"), {"types": ["charge"]})
            assert_keyed(
                plan_of(conn, rekey), {"jobs_ready", "jobs_keyed"}, f"rekey, {table}", by_key=False
            )
            # enqueue_many's keys for the floats it copied: by primary key.
            copied = (sql("key_copied_jobs"), {"type": "charge", "ids": list(range(1, 2001))})
            assert_keyed(plan_of(conn, copied), {"jobs_pkey"}, f"key_copied_jobs, {table}")
            conn.execute("ANALYZE jobs")
