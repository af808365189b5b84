"""What a supervisor counts on its hot path, in plain numbers, written to the Prometheus
metrics (common/metrics.py) about once a second by `Tally.publish`: calling prometheus-client
per job would cost more than the job."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from jobfleet.jobs import TYPE_QUEUE, WAITED, ClaimedJob
from jobfleet.metrics import BATCH_BUCKETS, DURATION_BUCKETS, metrics, observe_many


class _Buckets:
    """Observations of one histogram child, bucketed in plain Python."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


@dataclass
class Tally:
    """What a supervisor counted since it last published. Plain numbers: cheap per job."""

    node: str
    started: Counter[tuple[str, str]] = field(default_factory=Counter)
    succeeded: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    retried: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead: Counter[tuple[str, str]] = field(default_factory=Counter)
    cancelled: Counter[tuple[str, str]] = field(default_factory=Counter)
    lost: Counter[tuple[str, str]] = field(default_factory=Counter)
    progress_updates: Counter[tuple[str, str]] = field(default_factory=Counter)
    durations: dict[tuple[str, str], _Buckets] = field(default_factory=dict)
    waits: dict[tuple[str, str], _Buckets] = field(default_factory=dict)
    batch_sizes: _Buckets = field(default_factory=lambda: _Buckets(len(BATCH_BUCKETS) + 1))
    child_crashes: int = 0
    child_restarts: Counter[str] = field(default_factory=Counter)
    late_completions: int = 0
    lease_renewals: int = 0
    database_errors: Counter[str] = field(default_factory=Counter)
    statement_errors: Counter[str] = field(default_factory=Counter)

    def observe_duration(self, key: tuple[str, str], seconds: float) -> None:
        _observe(self.durations, key, seconds)

    def observe_wait(self, key: tuple[str, str], seconds: float) -> None:
        _observe(self.waits, key, seconds)

    def observe_durations(self, key: tuple[str, str], seconds: list[float]) -> None:
        _observe_all(self.durations, key, seconds)

    def observe_waits(self, key: tuple[str, str], seconds: list[float]) -> None:
        _observe_all(self.waits, key, seconds)

    def count_started(self, jobs: Sequence[ClaimedJob]) -> None:
        """A claimed batch handed to the children: by the batch, in C loops (map, Counter),
        since this runs for every job."""
        self.observe_batch(len(jobs))
        keys = Counter(map(TYPE_QUEUE, jobs))
        self.started.update(keys)
        if len(keys) == 1:
            self.observe_waits(next(iter(keys)), list(map(WAITED, jobs)))
        else:
            for job in jobs:
                self.observe_wait((job.type, job.queue), job.waited)

    def observe_batch(self, size: int) -> None:
        self.batch_sizes.counts[bisect_left(BATCH_BUCKETS, size)] += 1
        self.batch_sizes.total += size

    def publish(self) -> None:
        """Write everything counted so far to the metric files, and start again from zero."""
        m = metrics()
        for counter, counts in (
            (m.started, self.started),
            (m.succeeded, self.succeeded),
            (m.failed, self.failed),
            (m.retried, self.retried),
            (m.dead, self.dead),
            (m.cancelled, self.cancelled),
            (m.lost, self.lost),
            (m.progress_updates, self.progress_updates),
        ):
            for labels, n in counts.items():
                counter.labels(*labels).inc(n)
            counts.clear()
        for histogram, observed in ((m.duration, self.durations), (m.wait, self.waits)):
            for labels, buckets in observed.items():
                observe_many(histogram.labels(*labels), buckets.counts, buckets.total)
            observed.clear()
        if self.batch_sizes.total:
            observe_many(
                m.claim_batch_size.labels(self.node),
                self.batch_sizes.counts,
                self.batch_sizes.total,
            )
            self.batch_sizes = _Buckets(len(BATCH_BUCKETS) + 1)
        if self.child_crashes:
            m.child_crashes.labels(self.node).inc(self.child_crashes)
            self.child_crashes = 0
        for reason, n in self.child_restarts.items():
            m.child_restarts.labels(self.node, reason).inc(n)
        self.child_restarts.clear()
        if self.late_completions:
            m.late_completions.labels(self.node).inc(self.late_completions)
            self.late_completions = 0
        if self.lease_renewals:
            m.lease_renewals.labels(self.node).inc(self.lease_renewals)
            self.lease_renewals = 0
        for operation, n in self.database_errors.items():
            m.database_errors.labels(self.node, operation).inc(n)
        self.database_errors.clear()
        for statement, n in self.statement_errors.items():
            m.statement_errors.labels(self.node, statement).inc(n)
        self.statement_errors.clear()
        # Label sets a scrape should show from the start, even at zero.
        m.late_completions.labels(self.node)
        m.child_crashes.labels(self.node)


def _buckets(table: dict[tuple[str, str], _Buckets], key: tuple[str, str]) -> _Buckets:
    buckets = table.get(key)
    if buckets is None:
        buckets = table[key] = _Buckets(len(DURATION_BUCKETS) + 1)
    return buckets


def _observe(table: dict[tuple[str, str], _Buckets], key: tuple[str, str], value: float) -> None:
    buckets = _buckets(table, key)
    buckets.counts[bisect_left(DURATION_BUCKETS, value)] += 1
    buckets.total += value


_BUCKET_OF = partial(bisect_left, DURATION_BUCKETS)


def _observe_all(
    table: dict[tuple[str, str], _Buckets], key: tuple[str, str], values: list[float]
) -> None:
    """Many observations of one label set: bucketed by C loops (map, Counter), not one by one."""
    buckets = _buckets(table, key)
    counts = buckets.counts
    for bucket, n in Counter(map(_BUCKET_OF, values)).items():
        counts[bucket] += n
    buckets.total += sum(values)
