"""The scheduler: the leader enqueues each periodic job's ticks, once for the whole cluster.

Schedules are what live nodes declare (nodes.schedules, from `@handler(cron=..., every=...)`);
the state is the `schedules` table: each type's next tick due and the last one enqueued. A due
tick is enqueued in one transaction with moving `next_run` on (only if it is still the tick
due) and under an idempotency key naming the tick, so neither a second leader nor a retry can
enqueue it twice. Ticks missed while no node ran collapse into one, enqueued on return. The
leader runs it at each of its heartbeats and when the soonest tick falls due.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobfleet import aio
from jobfleet.log import get_logger
from jobfleet.queries import sql
from jobfleet.schedules import next_tick

log = get_logger("jobfleet.supervisor")


def tick_key(type: str, tick: datetime) -> str:
    """The idempotency key of a periodic job's tick: one job per tick, whoever enqueues it."""
    return f"jobfleet:tick:{type}:{tick.isoformat()}"


@dataclass
class Scheduler:
    node: str
    stale_after: float

    async def run_once(self, conn: Any) -> float | None:
        """Enqueue the ticks that are due; return the seconds until the soonest next one
        (None: no schedule)."""
        cur = await conn.execute(sql("declared_schedules"), {"stale_after": self.stale_after})
        soonest: float | None = None
        for type, schedule, payload, known, due, now in await cur.fetchall():
            if schedule != known:  # declared anew or changed: from the next tick on
                upcoming = next_tick(schedule, now)
                await conn.execute(
                    sql("set_schedule"), {"type": type, "schedule": schedule, "next_run": upcoming}
                )
            elif due <= now:
                upcoming = next_tick(schedule, now)
                await self._enqueue(conn, type, payload, due, upcoming)
            else:
                upcoming = due
            wait = (upcoming - now).total_seconds()
            soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    async def _enqueue(
        self, conn: Any, type: str, payload: Any, due: datetime, upcoming: datetime
    ) -> None:
        value = json.loads(payload) if isinstance(payload, str | bytes) else payload
        async with conn.transaction():
            moved = await conn.execute(
                sql("advance_schedule"), {"type": type, "due": due, "next_run": upcoming}
            )
            if await moved.fetchone() is None:
                return  # another leader moved it on
            job = await aio.enqueue(conn, type, value, idempotency_key=tick_key(type, due))
            await conn.execute(sql("schedule_enqueued"), {"type": type, "job": job})
        log.info(
            "enqueued a periodic job",
            extra={"node": self.node, "type": type, "tick": due.isoformat(), "job": job},
        )
