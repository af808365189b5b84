"""The limit recount: a safety net under the running counters of limited types.

The counters are kept exact by the statements that claim and finish jobs (claim_limited and
every outcome writer, in the same statements), so a recount finds nothing to correct unless
someone changed rows by hand. It also adopts jobs that were running before their type had a
limit (declared by a node that just started, or taken by a claim that began before a limit was
set at run time), so they count toward it. Rarely, by the leader: it locks each limited type's
row for a moment and counts its running jobs from the small index of held jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from jobfleet.queries import sql
from jobfleet.supervisor.store import run_pipelined
from jobfleet.type_limits import RECENT_KEY_CHANGE_SECONDS

# Why: the counters are exact by construction; this catches hand edits and adopts jobs that ran
# before a limit, both rare. Each run costs a lock of each limited type's row for a moment.
RECOUNT_INTERVAL_SECONDS = 30.0


class Recounted(NamedTuple):
    type: str
    counted: int  # what the counter said
    running: int  # the jobs running, now counted
    adopted: int  # of those, jobs that ran without counting (from before the limit)
    key: str | None = None  # a key's counter (limit_key); None: the type's


@dataclass
class LimitRecount:
    async def run_once(self, conn: Any) -> list[Recounted]:
        """Set every limited type's counter to its running jobs; the types that were off."""
        recent = {"recent": RECENT_KEY_CHANGE_SECONDS}
        found = (await run_pipelined(conn, [(sql("limited_types"), recent)]))[0]
        if not found:
            return []
        params = {"types": [r[0] for r in found]}
        # A type whose limit key changed lately: its queue keyed again, for any job an enqueue
        # keyed with the old field (rekey_queued).
        rekey = {"types": [r[0] for r in found if r[1]]}
        rows = await run_pipelined(
            conn,
            [
                (sql("lock_type_limits"), params),
                (sql("rekey_queued"), rekey),
                (sql("limit_recount"), params),
            ],
        )
        return [Recounted(*row) for row in rows[2]]
