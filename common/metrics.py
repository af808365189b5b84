"""Prometheus metrics, in prometheus-client's multiprocess mode.

The supervisor, its HTTP child and anything else a node runs write their counters and
histograms to files in one directory (`use_directory`); `/metrics` reads them all. Metric
objects are made on first use, so a process can choose the directory before that.

The supervisor counts per job on its hot path, so it does not call prometheus-client per job:
its `Tally` (supervisor/tally.py) adds up plain numbers and is written out about once a
second.
Gauges that describe the node or the database (workers, busy, leader, queue depth, oldest
ready job, node heartbeat ages) are a snapshot file the supervisor replaces as a whole; the
leader alone fills in the database figures, so a node that stops leading stops reporting them
instead of leaving a stale value behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobfleet.processes import alive

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SNAPSHOT_FILE = "jobfleet-gauges.json"

JOB_LABELS = ("type", "queue")
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


DIRECTORY_PREFIX = "jobfleet-metrics-"


def use_directory(path: str | None = None) -> str:
    """Write this process's metrics (and its children's) as files in `path` (a new temporary
    directory named after this pid when None). Call before the first metric is touched."""
    if path is None:
        remove_orphaned_directories()
        path = tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = path
    if "prometheus_client" in sys.modules:  # else it reads the variable when first imported
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def remove_orphaned_directories() -> None:
    """A supervisor removes its directory as it exits, but one killed with SIGKILL cannot:
    remove those left by supervisors on this host that no longer run."""
    base = Path(tempfile.gettempdir())
    for entry in base.glob(f"{DIRECTORY_PREFIX}*-*"):
        pid = entry.name.removeprefix(DIRECTORY_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def directory() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass(frozen=True)
class Definition:
    """One metric: a counter, or a histogram when it has buckets. prometheus-client adds
    `_total` to a counter's name in the exposition."""

    name: str
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None = None


# Every counter and histogram, under the key code uses (`metrics().<key>`, and the field of the
# same name in the supervisor's Tally). Adding a metric is one line here; tests check that the
# README lists it. The node-level gauges are the snapshot's (SnapshotCollector below).
NODE = ("node",)
DEFINITIONS: dict[str, Definition] = {
    "enqueued": Definition(
        "jobfleet_jobs_enqueued", "Jobs enqueued (HTTP API, CLI, Python API).", JOB_LABELS
    ),
    "started": Definition(
        "jobfleet_jobs_started", "Attempts started (jobs claimed by a node).", JOB_LABELS
    ),
    "succeeded": Definition("jobfleet_jobs_succeeded", "Attempts that succeeded.", JOB_LABELS),
    "failed": Definition(
        "jobfleet_jobs_failed",
        "Attempts that failed, crashed or timed out.",
        (*JOB_LABELS, "outcome"),
    ),
    "retried": Definition(
        "jobfleet_jobs_retried", "Failed attempts whose job went back to the queue.", JOB_LABELS
    ),
    "dead": Definition(
        "jobfleet_jobs_dead", "Jobs that ended dead (attempts spent or final).", JOB_LABELS
    ),
    "cancelled": Definition(
        "jobfleet_jobs_cancelled", "Jobs that ended cancelled while running.", JOB_LABELS
    ),
    "lost": Definition(
        "jobfleet_jobs_lost", "Attempts lost: their lease expired (node died).", JOB_LABELS
    ),
    "progress_updates": Definition(
        "jobfleet_job_progress_updates", "Progress reports written for running jobs.", JOB_LABELS
    ),
    "duration": Definition(
        "jobfleet_job_duration_seconds",
        "How long handlers ran (finished attempts).",
        JOB_LABELS,
        DURATION_BUCKETS,
    ),
    "wait": Definition(
        "jobfleet_job_wait_seconds",
        "How long jobs waited between becoming ready (run_at) and starting.",
        JOB_LABELS,
        DURATION_BUCKETS,
    ),
    "child_crashes": Definition(
        "jobfleet_child_crashes", "Worker processes that died unexpectedly.", NODE
    ),
    "child_restarts": Definition(
        "jobfleet_child_restarts",
        "Worker processes replaced, by why the old one went.",
        (*NODE, "reason"),
    ),
    "late_completions": Definition(
        "jobfleet_late_completions",
        "Outcomes dropped because their attempt had been replaced (fenced off).",
        NODE,
    ),
    "lease_renewals": Definition(
        "jobfleet_lease_renewals", "Job leases renewed by this node.", NODE
    ),
    "database_errors": Definition(
        "jobfleet_database_errors",
        "Database operations that failed (connection lost, timeout).",
        (*NODE, "operation"),
    ),
    "statement_errors": Definition(
        "jobfleet_statement_errors",
        "Statements the database refused on their data (each batch's bad rows isolated "
        "and recorded apart; the node goes on).",
        (*NODE, "statement"),
    ),
    "limit_holds": Definition(
        "jobfleet_limit_holds",
        "Claims of a limited job type that found its limit full (max_running or rate): the "
        "node had room, the limit held the type's jobs back until it opens.",
        (*NODE, "type", "limit"),
    ),
    "claim_batch_size": Definition(
        "jobfleet_claim_batch_size",
        "Jobs per claim statement that found work.",
        NODE,
        BATCH_BUCKETS,
    ),
    "http_requests": Definition(
        "jobfleet_http_requests",
        "HTTP requests answered, by route and status.",
        ("method", "route", "status"),
    ),
    "http_duration": Definition(
        "jobfleet_http_request_duration_seconds",
        "HTTP request latency.",
        ("method", "route"),
        DURATION_BUCKETS,
    ),
    "rate_limited": Definition(
        "jobfleet_rate_limited", "Requests refused with 429, by API key name.", ("key",)
    ),
}


class Metrics:
    """The prometheus-client objects of DEFINITIONS, by key: `metrics().retried`."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self._objects = objects

    def __getattr__(self, key: str) -> Any:
        try:
            return self._objects[key]
        except KeyError:
            raise AttributeError(f"no metric {key!r} in DEFINITIONS") from None


_built: Metrics | None = None
_building = threading.Lock()


def metrics() -> Metrics:
    """This process's metrics, made at the first call. Under a lock: a new HTTP process's
    first requests come at once on the server's threads, and a second set made beside the
    first fails to register (prometheus-client refuses the names twice)."""
    global _built
    if _built is None:
        with _building:
            if _built is None:
                _built = _made()
    return _built


def _made() -> Metrics:
    from prometheus_client import Counter, Histogram

    def make(d: Definition) -> Any:
        if d.buckets is None:
            return Counter(d.name, d.doc, d.labels)
        return Histogram(d.name, d.doc, d.labels, buckets=d.buckets)

    return Metrics({key: make(d) for key, d in DEFINITIONS.items()})


# Distinct (type, queue) label sets one process counts enqueues under. Both come from
# callers (an HTTP body), so past this many, new ones are counted as ("other", "other")
# rather than growing /metrics without bound.
ENQUEUED_LABEL_SETS_MAX = 1000
_enqueued_labels: set[tuple[str, str]] = set()


def count_enqueued(type: str, queue: str, n: int = 1) -> None:
    labels = (type, queue)
    if labels not in _enqueued_labels:
        if len(_enqueued_labels) >= ENQUEUED_LABEL_SETS_MAX:
            labels = ("other", "other")
        else:
            _enqueued_labels.add(labels)
    metrics().enqueued.labels(*labels).inc(n)


def observe_many(histogram: Any, counts: list[int], total: float) -> None:
    """Add pre-bucketed observations to a histogram child in one go.

    prometheus-client has no bulk observe; its histogram keeps one value per bucket (not
    cumulative) and a sum, which is what this adds to. tests/test_metrics.py checks that the
    exposition equals the one `observe` gives, so a change in the library cannot go unseen.
    """
    for index, n in enumerate(counts):
        if n:
            histogram._buckets[index].inc(n)
    histogram._sum.inc(total)


# -- the gauge snapshot ---------------------------------------------------------------------


def write_snapshot(path: str, gauges: dict[str, Any]) -> None:
    """Replace the snapshot file atomically (a reader never sees half of it)."""
    target = Path(path) / SNAPSHOT_FILE
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(gauges))
    os.replace(temporary, target)


def read_snapshot(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(path) / SNAPSHOT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class SnapshotCollector:
    """Serves the supervisor's gauge snapshot as Prometheus gauges."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        data = read_snapshot(self.path)
        if data is None:
            return
        node = str(data.get("node", ""))
        for name, key, doc in (
            ("jobfleet_workers", "workers", "Worker processes alive on the node."),
            ("jobfleet_workers_busy", "busy", "Worker processes running a job."),
            (
                "jobfleet_jobs_running",
                "running",
                "Jobs running on the node: a worker runs one at a time, or as many as the "
                "concurrency of its async and threaded types.",
            ),
            ("jobfleet_leader", "leader", "1 on the node leading maintenance (lease reaper)."),
        ):
            family = GaugeMetricFamily(name, doc, labels=["node"])
            family.add_metric([node], float(data.get(key, 0)))
            yield family
        yield _family(
            "jobfleet_queue_depth",
            "Jobs per queue and state (queued, running, dead), from the leader's periodic count.",
            ["queue", "state"],
            data.get("queue_depth", []),
        )
        yield _family(
            "jobfleet_queue_oldest_ready_age_seconds",
            "Age of the oldest job ready to run, per queue (0 when none waits).",
            ["queue"],
            data.get("oldest_ready_age", []),
        )
        yield _family(
            "jobfleet_queue_paused",
            "1 for a queue paused (no node claims from it), 0 once resumed; from the leader.",
            ["queue"],
            data.get("queue_paused", []),
        )
        yield _family(
            "jobfleet_node_heartbeat_age_seconds",
            "Seconds since each registered node's last heartbeat, as the leader sees it.",
            ["node"],
            data.get("heartbeat_age", []),
        )


def _family(name: str, doc: str, labels: list[str], rows: Iterable[Any]) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(name, doc, labels=labels)
    for row in rows:
        family.add_metric([str(v) for v in row[:-1]], float(row[-1]))
    return family


def exposition() -> tuple[bytes, str]:
    """Everything this node's processes recorded, in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    path = directory()
    if path is None:  # a single process (tests, embedding): its own registry
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(SnapshotCollector(path))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST
