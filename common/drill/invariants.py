"""What must hold after the drill, checked against the database's own record of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from jobfleet.drill import queries
from jobfleet.drill.faults import Fault
from jobfleet.drill.workload import KINDS


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def count(conn: psycopg.Connection[Any], query: str, params: Mapping[str, Any]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def fault_checks(
    conn: psycopg.Connection[Any],
    faults: Sequence[Fault],
    exits: Mapping[str, int | None],
    unexpected: Sequence[str],
    recovery_bound: float,
) -> list[Check]:
    """What must hold of the nodes the drill killed and paused, and of the fleet."""
    node_faults = [f for f in faults if f.hits_node]
    return [
        _lost_recorded(conn, node_faults),
        _hit_work(node_faults),
        _recovered(node_faults, recovery_bound),
        clean_exits(exits, unexpected),
    ]


def job_checks(conn: psycopg.Connection[Any], ids: Mapping[str, list[int]]) -> list[Check]:
    """What must hold of the workload's jobs whatever struck the fleet (the failover test and
    drill check these alone): each ended once, as its kind must, with its whole history."""
    every = [i for kind_ids in ids.values() for i in kind_ids]
    return [
        _ended(conn, every),
        _end_states(conn, ids),
        _no_double_success(conn, every),
        _history(conn, every),
        _charged_once(conn, ids),
    ]


def _ended(conn: psycopg.Connection[Any], every: list[int]) -> Check:
    unfinished = sum(n for s, n in _state_totals(conn, every).items() if s in ("queued", "running"))
    return Check(
        "every job ended in one terminal state",
        unfinished == 0,
        f"{len(every) - unfinished} of {len(every)} ended"
        + (f"; {unfinished} still queued or running" if unfinished else ""),
    )


def _state_totals(conn: psycopg.Connection[Any], every: list[int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _, state, n in conn.execute(queries.STATES_BY_KIND, {"ids": every}):
        totals[state] = totals.get(state, 0) + int(n)
    return totals


def _end_states(conn: psycopg.Connection[Any], ids: Mapping[str, list[int]]) -> Check:
    wrong = {
        k.name: count(conn, queries.WRONG_END_STATE, {"ids": ids[k.name], "state": k.ends})
        for k in KINDS
    }
    bad = {name: n for name, n in wrong.items() if n}
    failing = sum(len(ids[k.name]) for k in KINDS if k.ends == "dead")
    return Check(
        "dead jobs are exactly the always-failing ones",
        not bad,
        f"{failing} always-failing jobs dead, every other job succeeded"
        if not bad
        else "; ".join(f"{n} {name} jobs in the wrong state" for name, n in bad.items()),
    )


def _no_double_success(conn: psycopg.Connection[Any], every: list[int]) -> Check:
    twice = count(conn, queries.SUCCEEDED_TWICE, {"ids": every})
    return Check("no job succeeded twice", twice == 0, f"{twice} jobs with two successes")


def _history(conn: psycopg.Connection[Any], every: list[int]) -> Check:
    gaps = count(conn, queries.HISTORY_GAPS, {"ids": every})
    return Check(
        "every attempt recorded exactly once",
        gaps == 0,
        f"{gaps} jobs whose attempts 1..n are not each recorded once",
    )


def _charged_once(conn: psycopg.Connection[Any], ids: Mapping[str, list[int]]) -> Check:
    """The transactional kinds' business rows: one per succeeded job, by its succeeded
    attempt, and none for a dead job or any job of another kind."""
    charging = [i for k in KINDS if k.charges for i in ids[k.name]]
    wrong = count(conn, queries.CHARGES_WRONG, {"ids": charging})
    elsewhere = count(conn, queries.CHARGES_ELSEWHERE, {"ids": charging})
    rows = count(conn, queries.CHARGES_TOTAL, {})
    succeeded = count(conn, queries.SUCCEEDED_AMONG, {"ids": charging})
    return Check(
        "business rows = succeeded transactional jobs, one each",
        wrong == 0 and elsewhere == 0 and rows == succeeded,
        f"{rows} drill_charges rows for {succeeded} succeeded of {len(charging)} charge jobs"
        + (f"; {wrong} charge jobs with a wrong number of rows" if wrong else "")
        + (f"; {elsewhere} rows of other jobs" if elsewhere else ""),
    )


def _lost_recorded(conn: psycopg.Connection[Any], faults: Sequence[Fault]) -> Check:
    held = lost = 0
    others: list[str] = []
    for fault in faults:
        if not fault.held:
            continue
        params = {"ids": [i for i, _ in fault.held], "attempts": [a for _, a in fault.held]}
        for outcome, node, n in conn.execute(queries.RECORDED_AS, params):
            held += int(n)
            if outcome == "lost" and node == fault.node:
                lost += int(n)
            else:
                others.append(f"{n} {outcome or 'unrecorded'} on {node or '?'}")
    return Check(
        "attempts of killed and paused nodes recorded lost",
        lost == held,
        f"{lost} of {held} held attempts recorded lost"
        + (f" ({', '.join(others)})" if others else ""),
    )


def _hit_work(faults: Sequence[Fault]) -> Check:
    held = sum(len(f.held) for f in faults)
    return Check(
        "node faults struck running work",
        held > 0,
        f"{len(faults)} node faults struck {held} running jobs",
    )


def _recovered(faults: Sequence[Fault], bound: float) -> Check:
    late = [f for f in faults if f.released is None or f.released > bound or f.rerun is None]
    worst = max((f.released or 0.0 for f in faults), default=0.0)
    rerun = max((f.rerun or 0.0 for f in faults), default=0.0)
    return Check(
        "struck nodes' jobs recovered in time",
        not late,
        f"back in the queue within {worst:.1f} s (bound {bound:.1f} s), running elsewhere "
        f"within {rerun:.1f} s"
        + (f"; not recovered: {', '.join(f.node for f in late)}" if late else ""),
    )


def clean_exits(exits: Mapping[str, int | None], unexpected: Sequence[str]) -> Check:
    bad = [
        f"{n}: {'had to be killed' if c is None else f'exit {c}'}"
        for n, c in exits.items()
        if c != 0
    ]
    bad += list(unexpected)
    return Check(
        "nodes stayed up, drained on SIGTERM and exited 0",
        not bad,
        f"{len(exits)} nodes drained and exited 0" if not bad else "; ".join(bad),
    )
