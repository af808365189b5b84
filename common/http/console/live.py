"""Live updates for every open console of this HTTP process, from one poller.

Each console page opens a server-sent event stream (/ui/live). One asyncio task per process
runs while at least one stream is open: once a tick it reads, in one transaction, the jobs the
open pages show (the newest, the running ones, the ids the pages watch: one index-driven
statement) and the live nodes, and hands the same snapshot to every stream. Counts by queue
and state are the one read that grows with the table: they are kept and shared, taken again
only when views.counts_interval says so. So N open consoles cost the database what one does:
at most one transaction of two statements per tick, plus the counts at their own pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobfleet.http.console import views
from jobfleet.jobs import iso
from jobfleet.log import get_logger
from jobfleet.options import STATES
from jobfleet.queries import sql
from jobfleet.settings import settings

log = get_logger("jobfleet.http.console")

TICK_SECONDS = 1.0
RECENT_JOBS = 20
RUNNING_JOBS = 200
# A stream ends after this long and the browser's EventSource opens it again, signed in
# anew: a revoked key's open console stops receiving within this time.
STREAM_SECONDS = 60.0
RECONNECT_MS = 1000

Connect = Callable[[], AbstractContextManager[Any]]


@dataclass
class Counts:
    states: dict[str, int]
    queues: dict[str, dict[str, int]]
    taken_at: str | None


@dataclass
class _Stream:
    watched: frozenset[int]
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(1))


class LiveFeed:
    def __init__(self, connect: Connect, tick: float = TICK_SECONDS) -> None:
        self.connect, self.tick_seconds = connect, tick
        self._streams: dict[int, _Stream] = {}
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._counts: Counts | None = None
        self._counts_until = 0.0
        self._history: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    # -- shared reads, also used by page views ------------------------------------------
    def counts(self) -> Counts:
        """Counts by state and by queue, taken again only when the last ones are stale."""
        with self._lock:
            now = time.monotonic()
            if self._counts is not None and now < self._counts_until:
                return self._counts
            with self.connect() as conn:
                rows = conn.execute(sql("queue_counts")).fetchall()
            took = time.monotonic() - now
            states = dict.fromkeys(STATES, 0)
            queues: dict[str, dict[str, int]] = {}
            for queue, state, n in rows:
                states[state] = states.get(state, 0) + n
                queues.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
            self._counts = Counts(states, queues, iso(datetime.now(UTC)))
            self._counts_until = time.monotonic() + views.counts_interval(took)
            self._history.append((now, views.finished_total(states)))
            while self._history and self._history[0][0] < now - 60 * (views.THROUGHPUT_MINUTES + 1):
                self._history.popleft()
            return self._counts

    def throughput(self) -> list[int | None]:
        with self._lock:
            return views.throughput(list(self._history), time.monotonic())

    # -- the poller ------------------------------------------------------------------------
    def snapshot(self, watched: list[int]) -> dict[str, Any]:
        """One tick's read: the pages' jobs and the live nodes in one transaction; `at` is
        when it began (a page rendered later knows the snapshot is older than itself)."""
        began = datetime.now(UTC)
        with self.connect() as conn:
            conn.execute(sql("index_plans"))  # for this transaction: plans without statistics
            cur = conn.execute(
                sql("console_live_jobs"),
                {"recent": RECENT_JOBS, "running": RUNNING_JOBS, "watched": watched},
            )
            names = [c.name for c in cur.description]
            jobs = {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
            cur = conn.execute(sql("live_nodes"), {"stale_after": 3 * settings().node_heartbeat})
            node_names = [c.name for c in cur.description]
            nodes = [dict(zip(node_names, row, strict=True)) for row in cur.fetchall()]
        counts = self.counts()
        now = datetime.now(UTC)
        recent = sorted(jobs, reverse=True)[:RECENT_JOBS]
        for job in jobs.values():
            job["created_at"], job["finished_at"] = iso(job["created_at"]), iso(job["finished_at"])
        return {
            "at": iso(began),
            "counts": counts.states,
            "queues": counts.queues,
            "throughput": self.throughput(),
            "nodes": [_node(n, jobs.values(), now) for n in nodes],
            "jobs": jobs,
            "recent": recent,
        }

    async def _run(self) -> None:
        while self._streams:
            watched = sorted(set().union(*(s.watched for s in self._streams.values())))
            try:
                snap = await asyncio.to_thread(self.snapshot, watched[: views.WATCH_MAX])
            except Exception as exc:  # the database away: the consoles keep their last view
                log.warning("console live read failed", extra={"error": str(exc)})
            else:
                for stream in list(self._streams.values()):
                    _put_latest(stream.inbox, _for_stream(snap, stream.watched))
            await asyncio.sleep(self.tick_seconds)
        self._task = None

    async def stream(
        self, watched: list[int], lifetime: float = STREAM_SECONDS
    ) -> AsyncIterator[str]:
        """A server-sent event stream of snapshots for one open page, for `lifetime` seconds."""
        key = next(self._ids)
        mine = _Stream(frozenset(watched))
        self._streams[key] = mine
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            deadline = time.monotonic() + lifetime
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    snap = await asyncio.wait_for(mine.inbox.get(), timeout=min(left, 15.0))
                    yield f"event: snapshot\ndata: {json.dumps(snap, default=str)}\n\n"
                    continue
                yield ": still here\n\n"
        finally:
            self._streams.pop(key, None)

    @property
    def open_streams(self) -> int:
        return len(self._streams)


def _put_latest(inbox: asyncio.Queue[dict[str, Any]], snap: dict[str, Any]) -> None:
    """A slow browser gets the newest snapshot, never a backlog of old ones."""
    if inbox.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            inbox.get_nowait()
    inbox.put_nowait(snap)


def _for_stream(snap: dict[str, Any], watched: frozenset[int]) -> dict[str, Any]:
    jobs = snap["jobs"]
    keep = set(snap["recent"]) | {i for i in watched if i in jobs}
    keep |= {i for i, j in jobs.items() if j["state"] == "running"}
    return {**snap, "jobs": [jobs[i] for i in sorted(keep, reverse=True)]}


def _node(node: dict[str, Any], jobs: Any, now: datetime) -> dict[str, Any]:
    age = views.heartbeat_age(node["last_heartbeat"], now)
    return {
        "name": node["name"],
        "hostname": node["hostname"],
        "pid": node["pid"],
        "workers": node["workers"],
        "busy": node["busy"],
        "running": node["running"],
        "heartbeat_age": None if age is None else round(age, 1),
        "jobs": sorted(
            j["id"] for j in jobs if j["state"] == "running" and j["node"] == node["name"]
        ),
    }
