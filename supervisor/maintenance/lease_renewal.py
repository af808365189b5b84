"""Lease renewal: one statement renews every lease this run of the node holds, and says which
of those jobs someone asked to cancel (a cancel whose NOTIFY was missed is heard here); and
that report alone, for when the node starts to listen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined


class Renewed(NamedTuple):
    job_id: int
    attempt: int
    cancel_requested: bool


@dataclass
class LeaseRenewal:
    holder: str  # this run's lease holder (locked_by)
    lease_seconds: float
    # A lease set less than this long ago is left alone (renew_leases); the control connection
    # makes it a quarter of the time between renewals (control.py).
    fresh_seconds: float = 0.0

    async def run_once(self, conn: Any, held: Sequence[int]) -> list[Renewed]:
        """Renew the leases on `held` that are still ours, but for those set in the last
        `fresh_seconds`; an idle node spends no query."""
        if not held:
            return []
        params = {
            "holder": self.holder,
            "lease_seconds": self.lease_seconds,
            "fresh_seconds": self.fresh_seconds,
            "ids": list(held),
        }
        rows = await run_pipelined(conn, [(sql("renew_leases"), params)])
        return [Renewed(*row) for row in rows[0]]

    async def cancels_asked(self, conn: Any, held: Sequence[int]) -> list[tuple[int, int]]:
        """(job id, attempt) of those of `held`, still ours, that someone asked to cancel."""
        if not held:
            return []
        params = {"holder": self.holder, "ids": list(held)}
        rows = await run_pipelined(conn, [(sql("cancels_asked"), params)])
        return [(int(job_id), int(attempt)) for job_id, attempt in rows[0]]
