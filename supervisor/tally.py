"""What a supervisor counts on its hot path, in plain numbers, written to the Prometheus
metrics (common/metrics.py) about once a second by `Tally.publish`: calling prometheus-client
per job would cost more than the job."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from jobfleet.jobs import WAITED, ClaimedJob, one_type_queue
from jobfleet.metrics import (
    BATCH_BUCKETS,
    DEFINITIONS,
    DURATION_BUCKETS,
    NODE,
    metrics,
    observe_many,
)


class _Buckets:
    """Observations of one histogram child, bucketed in plain Python."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0

    def __bool__(self) -> bool:  # holds observations
        return any(self.counts)


@dataclass
class Tally:
    """What a supervisor counted since it last published. Plain numbers: cheap per job.

    Each field but `node` is named after the metric it feeds (metrics.DEFINITIONS), and
    `publish` goes by the field's kind: a Counter of label tuples (or of one label), an int,
    a table of histogram buckets per label set, or one histogram's buckets. The `node` label
    comes first where the metric has one, so counting a metric of a node is `+= 1`.
    """

    node: str
    started: Counter[tuple[str, str]] = field(default_factory=Counter)
    succeeded: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    retried: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead: Counter[tuple[str, str]] = field(default_factory=Counter)
    cancelled: Counter[tuple[str, str]] = field(default_factory=Counter)
    lost: Counter[tuple[str, str]] = field(default_factory=Counter)
    progress_updates: Counter[tuple[str, str]] = field(default_factory=Counter)
    duration: dict[tuple[str, str], _Buckets] = field(default_factory=dict)
    wait: dict[tuple[str, str], _Buckets] = field(default_factory=dict)
    limit_holds: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, limit)
    claim_batch_size: _Buckets = field(default_factory=lambda: _Buckets(len(BATCH_BUCKETS) + 1))
    child_crashes: int = 0
    child_restarts: Counter[str] = field(default_factory=Counter)
    late_completions: int = 0
    lease_renewals: int = 0
    database_errors: Counter[str] = field(default_factory=Counter)
    statement_errors: Counter[str] = field(default_factory=Counter)
    _published: bool = field(default=False, init=False, repr=False, compare=False)

    def observe_duration(self, key: tuple[str, str], seconds: float) -> None:
        _observe(self.duration, key, seconds)

    def observe_wait(self, key: tuple[str, str], seconds: float) -> None:
        _observe(self.wait, key, seconds)

    def observe_durations(self, key: tuple[str, str], seconds: list[float]) -> None:
        _observe_all(self.duration, key, seconds)

    def observe_waits(self, key: tuple[str, str], seconds: list[float]) -> None:
        _observe_all(self.wait, key, seconds)

    def count_started(self, jobs: Sequence[ClaimedJob]) -> None:
        """A claimed batch handed to the children: by the batch, in C loops, when its jobs
        are all of one type and queue (the hot path: this runs for every job)."""
        self.observe_batch(len(jobs))
        key = one_type_queue(jobs)
        if key is not None:
            self.started[key] += len(jobs)
            self.observe_waits(key, list(map(WAITED, jobs)))
            return
        for job in jobs:
            key = (job.type, job.queue)
            self.started[key] += 1
            self.observe_wait(key, job.waited)

    def count_after_attempt(self, key: tuple[str, str], state: str) -> None:
        """Where a job went once an attempt of it ended without success (written by a lane,
        or reaped): queued again, dead or cancelled (jobfleet_state_after_failure)."""
        if state == "queued":
            self.retried[key] += 1
        elif state == "dead":
            self.dead[key] += 1
        elif state == "cancelled":
            self.cancelled[key] += 1

    def observe_batch(self, size: int) -> None:
        self.claim_batch_size.counts[bisect_left(BATCH_BUCKETS, size)] += 1
        self.claim_batch_size.total += size

    def publish(self) -> None:
        """Write everything counted so far to the metric files, and start again from zero.
        What counted nothing since the last time costs a look: an idle node publishes every
        second, and going through prometheus-client for every metric each time was most of
        its wake-up (issue 17, idle node < 1 %)."""
        m = metrics()
        first = not self._published
        self._published = True
        for name in COUNTED:
            value = getattr(self, name)
            if not value and not (first and isinstance(value, int)):
                continue  # nothing counted (a _Buckets is truthy only once it holds some)
            metric = getattr(m, name)
            node = (self.node,) if DEFINITIONS[name].labels[:1] == NODE else ()
            if isinstance(value, Counter):
                for labels, n in value.items():
                    metric.labels(*node, *_as_tuple(labels)).inc(n)
                value.clear()
            elif isinstance(value, int):
                # Shown from the first scrape on, even at zero.
                child = metric.labels(*node)
                if value:
                    child.inc(value)
                    setattr(self, name, 0)
            elif isinstance(value, dict):
                for labels, buckets in value.items():
                    observe_many(metric.labels(*node, *labels), buckets.counts, buckets.total)
                value.clear()
            else:
                observe_many(metric.labels(*node), value.counts, value.total)
                setattr(self, name, _Buckets(len(value.counts)))


# The fields `publish` writes, each a metric: all but the node's name and its bookkeeping.
COUNTED = tuple(f.name for f in fields(Tally) if f.name not in ("node", "_published"))


def _as_tuple(labels: str | tuple[str, ...]) -> tuple[str, ...]:
    return labels if isinstance(labels, tuple) else (labels,)


def _buckets(table: dict[tuple[str, str], _Buckets], key: tuple[str, str]) -> _Buckets:
    buckets = table.get(key)
    if buckets is None:
        buckets = table[key] = _Buckets(len(DURATION_BUCKETS) + 1)
    return buckets


def _observe(table: dict[tuple[str, str], _Buckets], key: tuple[str, str], value: float) -> None:
    buckets = _buckets(table, key)
    buckets.counts[bisect_left(DURATION_BUCKETS, value)] += 1
    buckets.total += value


def _observe_all(
    table: dict[tuple[str, str], _Buckets], key: tuple[str, str], values: list[float]
) -> None:
    """Many observations of one label set, as many `_observe` would make them."""
    buckets = _buckets(table, key)
    add_bucketed(buckets.counts, values, DURATION_BUCKETS)
    buckets.total += sum(values)


def add_bucketed(counts: list[int], values: list[float], bounds: Sequence[float]) -> None:
    """Count each value in its bucket, bucket i holding what is above bounds[i - 1] and at
    most bounds[i] (the last: above them all), as bisect_left(bounds, value) places one.
    Sorted once and cut at each bound, in C: 0.03 ms a thousand values, against 0.11 placing
    each one (every claimed job's wait and every job's run time pass here). `values` is
    sorted in place."""
    values.sort()
    below = 0
    for bucket, bound in enumerate(bounds):
        upto = bisect_right(values, bound, below)
        counts[bucket] += upto - below
        below = upto
        if below == len(values):
            return
    counts[len(bounds)] += len(values) - below
