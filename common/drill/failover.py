"""A primary failover, timed on the database's clock: when the primary went, when the new one
took writes, and when each node first claimed a job on it. The failover test and the drill's
`--failover` read it the same way and print it with `timeline_table`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from jobfleet.cli.render import table
from jobfleet.drill import queries
from jobfleet.drill.invariants import Check


@dataclass
class Timeline:
    """Moments on the database servers' clock (one machine's, or NTP-close hosts')."""

    down: datetime  # the primary was gone (or the failover began)
    since: datetime  # what the nodes' return is timed from: the promotion, or writes seen again
    since_label: str = "promotion started"
    moments: list[tuple[str, datetime]] = field(default_factory=list)  # others, to show
    first_claims: dict[str, datetime] = field(default_factory=dict)  # node -> first claim
    running_at_kill: int = 0  # jobs running when the primary went

    def back_after(self, node: str) -> float | None:
        """Seconds from `since` to the node's first claim on the new primary."""
        at = self.first_claims.get(node)
        return None if at is None else (at - self.since).total_seconds()


def clock(conn: psycopg.Connection[Any]) -> datetime:
    """The server's clock now (clock_timestamp(), not the transaction's start)."""
    row = conn.execute(queries.CLOCK).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def first_claims(
    conn: psycopg.Connection[Any], ids: Sequence[int], since: datetime
) -> dict[str, datetime]:
    """Each node's first claim at or after `since`, from every attempt's start."""
    rows = conn.execute(queries.FIRST_CLAIMS_SINCE, {"ids": list(ids), "since": since})
    return {str(node): at for node, at in rows}


def back_in_time(timeline: Timeline, nodes: Sequence[str], bound: float) -> Check:
    """Every node claimed on the new primary within `bound` seconds of the promotion."""
    late = {n: timeline.back_after(n) for n in nodes}
    missing = [n for n, s in late.items() if s is None or s > bound]
    worst = max((s for s in late.values() if s is not None), default=0.0)
    return Check(
        "every node back at work on the new primary in time",
        not missing,
        f"first claims {worst:.1f} s after {timeline.since_label} at the latest "
        f"(bound {bound:.1f} s)" + (f"; late or never: {', '.join(missing)}" if missing else ""),
    )


def timeline_table(timeline: Timeline) -> str:
    """The failover's moments and each node's first claim, in order, each in seconds after
    the primary went; a claim also in seconds after `since`."""

    def since_down(at: datetime) -> str:
        return f"{(at - timeline.down).total_seconds():+.2f} s"

    moments = [("primary gone", timeline.down, ""), (timeline.since_label, timeline.since, "")]
    moments += [(label, at, "") for label, at in timeline.moments]
    moments += [
        (f"first claim by {node}", at, f" (+{(at - timeline.since).total_seconds():.2f} s)")
        for node, at in timeline.first_claims.items()
    ]
    rows = [
        (label, since_down(at), at.isoformat(timespec="milliseconds") + after)
        for label, at, after in sorted(moments, key=lambda m: m[1])
    ]
    headers = ("failover (database clock)", "after the primary went", "at")
    return table(headers, rows, whole=True)
