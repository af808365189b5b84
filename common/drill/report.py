"""The drill's closing report: the workload, the faults, the invariants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from jobfleet.cli.render import table
from jobfleet.drill import queries
from jobfleet.drill.faults import KILL_CHILD, Fault
from jobfleet.drill.invariants import Check
from jobfleet.drill.workload import KINDS

# Attempts that did not succeed, by outcome (the successes are the `succeeded` column).
OUTCOMES = ("failed", "crashed", "lost")


def workload_table(conn: psycopg.Connection[Any], ids: Mapping[str, list[int]]) -> str:
    every = [i for kind_ids in ids.values() for i in kind_ids]
    states: dict[tuple[str, str], int] = {}
    for type_, state, n in conn.execute(queries.STATES_BY_KIND, {"ids": every}):
        states[type_, state] = int(n)
    outcomes: dict[tuple[str, str], int] = {}
    for type_, outcome, n in conn.execute(queries.OUTCOMES_BY_KIND, {"ids": every}):
        outcomes[type_, outcome] = int(n)
    rows = []
    for kind in KINDS:
        attempts = sum(n for (t, _), n in outcomes.items() if t == kind.type)
        rows.append(
            (
                kind.name,
                len(ids[kind.name]),
                kind.ends,
                states.get((kind.type, "succeeded"), 0),
                states.get((kind.type, "dead"), 0),
                attempts,
                *(outcomes.get((kind.type, o), 0) for o in OUTCOMES),
            )
        )
    headers = ["kind", "jobs", "must end", "succeeded", "dead", "attempts"]
    headers += [f"{o} attempts" for o in OUTCOMES]
    return table(headers, rows)


def faults_table(faults: Sequence[Fault], started: float) -> str:
    rows = [
        (
            f"{(f.struck or started) - started:.1f}",
            f.kind,
            f.node,
            len(f.held),
            "-" if f.released is None else f"{f.released:.1f}",
            "-" if f.rerun is None else f"{f.rerun:.1f}",
        )
        for f in faults
        if f.hits_node and f.struck is not None
    ]
    kills = [f for f in faults if f.kind == KILL_CHILD and f.struck is not None]
    body = table(["at s", "fault", "node", "jobs held", "requeued s", "running elsewhere s"], rows)
    return body + f"\nworkers killed with SIGKILL: {len(kills)}"


def checks_table(checks: Sequence[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'ok' if check.ok else 'BROKEN':7} {check.name}")
        lines.append(f"        {check.detail}")
    return "\n".join(lines)
