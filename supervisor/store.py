"""The processing side's queue operations: claim a batch, record outcomes, release.

Each is one statement for a whole batch. Recording is fenced on (id, attempt, running) and
the claim's holder: the outcome of an attempt that lost its lease, or whose claim a database
crash undid (claims commit without waiting for their WAL flush: see generic_index_plans), is
dropped, never written over the newer attempt.
The statements are built here; `claim`, `record` and `release` run them on a blocking
connection, and the supervisor runs the same statements on its asyncio connections.

The writes are never server-side prepared: a generic plan cannot know how long the arrays are,
and with statistics that see few running jobs it scanned the table for every batch (measured:
550 ms instead of 2.5 ms for 500 jobs), so planning each batch is worth its fraction of a
millisecond. The claims are the other way round: one plan is right for every claim (walk
jobs_ready in order, stop after the batch), and planning the statement was most of an idle
node's claim (0.5 ms of the 0.8 ms it took warm). The lanes run them prepared, on a generic plan
made under `index_plans` (`run_pipelined(..., prepared=True)`); tests/test_plans.py checks that
plan as it checks the others.

Nor do their plans depend on statistics: `run_pipelined` runs them in one pipeline after
`index_plans` (processing.sql), which leaves the planner index paths only for that transaction,
so a freshly filled, never analysed table is claimed from and written to as an analysed one is.
The maintenance statements that touch `jobs` (lease renewal, the reaper, the pruner, the
gauges) and the idle node's looks for work run the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from jobfleet.completion import Statement as Statement
from jobfleet.completion import SuccessColumns
from jobfleet.completion import success_statement as success_statement
from jobfleet.jobs import AttemptResult, ClaimedJob, Success
from jobfleet.queries import sql
from jobfleet.settings import Settings, settings
from jobfleet.supervisor import lone_claim

if TYPE_CHECKING:
    from jobfleet.supervisor.node import Node

_ID = itemgetter(0)
# A keyed claim walks at most this many keys (claim_keyed), each taking a share of the batch.
# Why: each key walked costs the claim about as much as a few jobs (an index descent to find
# it, one to take its jobs, its counter row), so a claim of 4000 over 1000 keys spent most of
# its time on keys (measured: 0.24 of the unlimited drain); over 100 keys, each key's share is
# 40 jobs. Turns stay fair: a key waits for at most (keys with jobs ready) / TURN_KEYS claims,
# and two keys share every claim.
TURN_KEYS = 100
_PRIORITY = itemgetter(3)


@dataclass(frozen=True)
class Recorded:
    written: int  # outcomes that matched their attempt and were stored
    late: int  # outcomes of attempts that no longer held their job: dropped


def claim_statement(
    *,
    holder: str,
    types: Sequence[str],
    queues: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
) -> Statement:
    """Claim up to `limit` ready jobs of `types` (in `queues`, or any queue when None; never
    in a paused one) for `holder`, the lease owner written to `locked_by`."""
    return sql("claim"), {
        "node": holder,
        "types": list(types),
        "queues": None if queues is None else list(queues),
        "limit": limit,
        "lease_seconds": lease_seconds,
    }


def claim_limited_statements(
    *,
    holder: str,
    type: str,
    queues: Sequence[str] | None,
    limit: int,
    lease_seconds: float,
    keyed: bool = False,
) -> list[Statement]:
    """Claim up to `limit` ready jobs of a type with limits, no more than they allow, then
    read the type's limits and counts as the claim left them (one transaction). `keyed`: the
    type has a limit key: lock its row, then claim its keys in turns (claim_keyed). The claim's
    rows are the next to last statement's, the limits' the last's."""
    params = {
        "node": holder,
        "type": type,
        "queues": None if queues is None else list(queues),
        "limit": limit,
        "lease_seconds": lease_seconds,
    }
    state = (sql("limit_state"), {"type": type, "keyed": keyed})
    if keyed:
        turn = {**params, "keys": min(limit, TURN_KEYS)}
        return [(sql("lock_keyed_type"), {"type": type}), (sql("claim_keyed"), turn), state]
    return [(sql("claim_limited"), params), state]


# ClaimedJob._make without its Python frame per row: the claim's rows become jobs in a C loop.
_AS_JOB = partial(tuple.__new__, ClaimedJob)


def claimed_jobs(rows: Sequence[Sequence[Any]]) -> list[ClaimedJob]:
    jobs: list[ClaimedJob] = list(map(_AS_JOB, rows))
    if jobs and len(jobs[0]) != len(ClaimedJob._fields):
        raise ValueError(f"a claim returned {len(jobs[0])} columns for {ClaimedJob._fields}")
    # The UPDATE returns rows in no set order; run them in pickup order: by id, then (a stable
    # sort) by priority, highest first, when priorities differ.
    jobs.sort(key=_ID)
    if len(set(map(_PRIORITY, jobs))) > 1:
        jobs.sort(key=_PRIORITY, reverse=True)
    return jobs


def claimed_in_turns(rows: Sequence[Sequence[Any]]) -> list[ClaimedJob]:
    """A keyed claim's jobs (claim_keyed: each row ends with its turn, the job's rank among
    its key's and its key's place in the walk) in turns: the first of each key, then the
    second of each, and so on, so children start every key's first jobs first."""
    ordered = sorted(rows, key=lambda row: (row[-2], row[-1]))
    jobs = [_AS_JOB(row[:-2]) for row in ordered]
    if jobs and len(jobs[0]) != len(ClaimedJob._fields):
        raise ValueError(f"a claim returned {len(jobs[0]) + 2} columns for {ClaimedJob._fields}")
    return jobs


def failure_statement(
    node: str,
    failures: Sequence[AttemptResult],
    config: Settings | None = None,
    *,
    holder: str | None = None,
) -> Statement:
    config = config or settings()
    return sql("fail_batch"), {
        "node": node,
        "holder": holder,
        "ids": [r.job_id for r in failures],
        "attempts": [r.attempt for r in failures],
        "outcomes": [r.outcome for r in failures],
        "errors": [r.error for r in failures],
        "finals": [r.final for r in failures],
        "backoffs": [r.backoff for r in failures],
        "backoff_seconds": [r.backoff_seconds for r in failures],
        "pids": [r.pid for r in failures],
        "started": [r.started_at for r in failures],
        "finished": [r.finished_at for r in failures],
        "backoff_base": config.backoff_base_seconds,
        "backoff_max": config.backoff_max_seconds,
    }


def record_statements(
    node: str,
    successes: Sequence[Success],
    failures: Sequence[AttemptResult],
    config: Settings | None = None,
    *,
    holder: str | None = None,
    formatted: Sequence[SuccessColumns] = (),
) -> list[Statement]:
    """At most two statements: the successes (`successes`, and those already `formatted`),
    and everything else."""
    statements: list[Statement] = []
    if successes or formatted:
        statements.append(success_statement(node, successes, holder=holder, formatted=formatted))
    if failures:
        statements.append(failure_statement(node, failures, config, holder=holder))
    return statements


def split_results(results: Sequence[AttemptResult]) -> tuple[list[Success], list[AttemptResult]]:
    successes = [r.as_success() for r in results if r.outcome == "succeeded"]
    return successes, [r for r in results if r.outcome != "succeeded"]


def release_statement(jobs: Sequence[tuple[int, int]], holder: str | None = None) -> Statement:
    """Claimed-but-unstarted (id, attempt) pairs back to the queue, no attempt spent."""
    return sql("release_batch"), {
        "ids": [job_id for job_id, _ in jobs],
        "attempts": [attempt for _, attempt in jobs],
        "holder": holder,
    }


# -- running them --------------------------------------------------------------------------


async def run_pipelined(
    conn: Any, statements: Sequence[Statement], *, prepared: bool = False
) -> list[list[Any]]:
    """Run the statements in one round trip and one transaction, after `index_plans`; return
    each one's rows ([] for none). On an autocommit connection (the supervisor's) the pipeline
    is a transaction of its own, which the planner settings end with. `prepared`: the
    statements are prepared on the connection and run on their generic plan, made the first
    time under the same settings (only for statements whose one plan suits every call).

    The settings statement itself is always prepared (the supervisor's connections are its
    own sessions, never behind a transaction pooler): parsed and planned at every round trip,
    it cost an idle node's claim 0.05-0.07 ms of 0.27 (measured on an empty queue)."""
    async with conn.pipeline():
        await conn.execute(sql("generic_index_plans" if prepared else "index_plans"), prepare=True)
        cursors = [await conn.execute(q, p, prepare=prepared) for q, p in statements]
    return [await cur.fetchall() if cur.description else [] for cur in cursors]


async def run_claims(conn: Any, statements: Sequence[Statement], *, plain: bool) -> list[list[Any]]:
    """A round of claims (lanes.py); each one's rows. `plain`: they are all plain claims
    (jobfleet_claim), which bring their own planner settings and commit mode: a lone one, an
    idle node's, is sent on its own and on libpq itself (lone_claim.py; 0.26 ms a call
    against 0.34 in a pipeline after the settings, measured with one job ready, before
    that), several in one pipeline, one transaction. Other
    rounds (a limited type's claims are statements) run as `run_pipelined(..., prepared=True)`.
    """
    if not plain:
        return await run_pipelined(conn, statements, prepared=True)
    if len(statements) == 1:
        return [await lone_claim.claim(conn, statements[0][1])]
    async with conn.pipeline():
        cursors = [await conn.execute(q, p, prepare=True) for q, p in statements]
    return [await cur.fetchall() for cur in cursors]


def run_pipelined_blocking(conn: Any, statements: Sequence[Statement]) -> list[list[Any]]:
    """`run_pipelined` on a blocking connection. In a transaction the caller opened, the
    planner settings last until it ends."""
    with conn.pipeline():
        conn.execute(sql("index_plans"), prepare=False)
        cursors = [conn.execute(q, p, prepare=False) for q, p in statements]
    return [cur.fetchall() if cur.description else [] for cur in cursors]


# A node's looks on its hot path's terms (run_pipelined): its limits, when its next scheduled
# job falls due, and a burst node's last look. `node` says which types and queues it runs.


async def node_limits(conn: Any, types: Sequence[str]) -> list[Any]:
    """The limits and counts of those of `types` that have limits."""
    return (await run_pipelined(conn, [(sql("node_limits"), {"types": types})]))[0]


async def soonest_scheduled(conn: Any, node: Node) -> float | None:
    """When the soonest job the node may run, scheduled for later, falls due (epoch seconds
    on the database's clock); None when none is."""
    rows = await run_pipelined(conn, [(sql("soonest_scheduled"), _types_and_queues(node))])
    return None if not rows[0] or rows[0][0][0] is None else float(rows[0][0][0])


async def nothing_elsewhere(conn: Any, node: Node, holder: str) -> bool:
    """A burst node's last look: no job it may run is ready, or running under another
    holder."""
    params = {**_types_and_queues(node), "holder": holder, "name": node.name}
    rows = await run_pipelined(conn, [(sql("burst_nothing_elsewhere"), params)])
    return bool(rows[0]) and bool(rows[0][0][0])


def _types_and_queues(node: Node) -> dict[str, Any]:
    return {"types": node.types, "queues": None if node.queues is None else list(node.queues)}


def claim(conn: Any, **options: Any) -> list[ClaimedJob]:
    return claimed_jobs(run_pipelined_blocking(conn, [claim_statement(**options)])[0])


def record(
    conn: Any,
    node: str,
    results: Sequence[AttemptResult],
    config: Settings | None = None,
    *,
    holder: str | None = None,
) -> Recorded:
    successes, failures = split_results(results)
    statements = record_statements(node, successes, failures, config, holder=holder)
    written = sum(map(len, run_pipelined_blocking(conn, statements))) if statements else 0
    return Recorded(written=written, late=len(results) - written)


def release(conn: Any, jobs: Sequence[ClaimedJob], holder: str | None = None) -> int:
    if not jobs:
        return 0
    statement = release_statement([(j.id, j.attempt) for j in jobs], holder)
    return len(run_pipelined_blocking(conn, [statement])[0])
