"""Leadership: the node whose control session holds an advisory lock runs the shared services
(the lease reaper at once, the pruner, the queue gauges). The lock lives with the session, so
a leader that dies or loses its connection hands over by itself; no election of our own."""

from __future__ import annotations

from typing import Any

from jobfleet.queries import sql


class Leadership:
    async def run_once(self, conn: Any) -> bool:
        """Try to take the lead on this session; True if it holds it now."""
        cur = await conn.execute(sql("try_leadership"))
        row = await cur.fetchone()
        return bool(row and row[0])
