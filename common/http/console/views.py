"""The console's decisions, pure: which buttons a key gets, when a jobs page offers a bulk
cancel, how a jobs page is cut from the id range, how often the counts may be taken,
throughput from successive counts, and the ids a live stream watches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from jobfleet.options import ID_MAX

# A jobs page reads at most this many ids below its top (through the primary key, newest
# first): however rare the filtered jobs are among 10M rows, one page costs at most this many
# index entries, and a page that found fewer than asked offers to go on below its window.
PAGE_WINDOW = 50_000
# A live stream's page shows at most this many jobs to watch; the whole process watches at
# most WATCH_MAX ids in one statement per tick.
WATCH_PER_STREAM = 200
WATCH_MAX = 2_000
# Counts by queue and state read the whole table: at most once per COUNTS_MIN_SECONDS, and
# never more than 1/COUNTS_COST_SHARE of the time (a count that took 2 s waits 20 s).
COUNTS_MIN_SECONDS = 2.0
COUNTS_COST_SHARE = 10.0
# Throughput is kept per minute for this many minutes.
THROUGHPUT_MINUTES = 10


@dataclass(frozen=True)
class Allowed:
    """The actions a key's scopes allow: what buttons the console shows."""

    cancel: bool
    admin: bool


def allowed(scopes: Iterable[str]) -> Allowed:
    scopes = set(scopes)
    return Allowed(cancel="cancel" in scopes, admin="admin" in scopes)


def cancels_matching(filters: Mapping[str, str | None]) -> bool:
    """Whether a jobs page offers `Cancel matching`: its filters name a type and/or a queue,
    its state is queued or any, and no node (a bulk cancel takes the queued jobs of a type
    and queue, so a node filter would show other jobs than it cancels)."""
    return (
        bool(filters.get("type") or filters.get("queue"))
        and filters.get("state") in (None, "queued")
        and not filters.get("node")
    )


@dataclass(frozen=True)
class Window:
    """The ids a jobs page reads: below `top`, down to `floor` (both ids; floor included)."""

    top: int
    floor: int


def page_window(before: int | None, max_id: int | None, window: int = PAGE_WINDOW) -> Window:
    """The id range of a page that starts below `before` (None: the newest job)."""
    top = before if before is not None else min(ID_MAX, (max_id or 0) + 1)
    return Window(top=top, floor=max(1, top - window))


def next_before(ids: Sequence[int], limit: int, where: Window) -> int | None:
    """Where the next (older) page starts, or None when nothing is left below this one."""
    if len(ids) == limit:
        return ids[-1]
    return where.floor if where.floor > 1 else None


def counts_interval(last_seconds: float) -> float:
    """How long to keep counts that took `last_seconds` to take."""
    return max(COUNTS_MIN_SECONDS, last_seconds * COUNTS_COST_SHARE)


def finished_total(counts: dict[str, int]) -> int:
    return counts.get("succeeded", 0) + counts.get("dead", 0) + counts.get("cancelled", 0)


def throughput(samples: Sequence[tuple[float, int]], now: float) -> list[int | None]:
    """Jobs finished per minute over the last THROUGHPUT_MINUTES, oldest first, from samples
    (monotonic time, finished total) in time order; None for a minute with no samples around
    it. A total that went down (a purge, a retry) counts as no progress, never negative."""
    per_minute: list[int | None] = []
    for minute in range(THROUGHPUT_MINUTES, 0, -1):
        start, end = now - minute * 60, now - (minute - 1) * 60
        inside = [total for when, total in samples if start <= when <= end]
        before = [total for when, total in samples if when < start]
        if not inside:
            per_minute.append(None)
            continue
        first = before[-1] if before else inside[0]
        done = 0
        for previous, current in zip([first, *inside], inside, strict=False):
            done += max(0, current - previous)
        per_minute.append(done)
    return per_minute


def parse_watch(text: str | None) -> list[int]:
    """A stream's `watch` parameter (ids joined by commas) as ids; anything that is not an id
    in range is left out, and at most WATCH_PER_STREAM are kept."""
    ids: list[int] = []
    for part in (text or "").split(",")[:WATCH_PER_STREAM]:
        if part.isdigit() and len(part) <= 19 and 1 <= int(part) <= ID_MAX:
            ids.append(int(part))
    return ids


def heartbeat_age(last_heartbeat: datetime | None, now: datetime) -> float | None:
    if last_heartbeat is None:
        return None
    return max(0.0, (now - last_heartbeat).total_seconds())
