"""The supervisor's bulk metric writes give exactly what prometheus-client's own calls give."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from jobfleet.metrics import DURATION_BUCKETS, observe_many, read_snapshot, write_snapshot
from jobfleet.supervisor.tally import Tally


def test_bulk_observations_equal_one_by_one_observations() -> None:
    values = [0.0004, 0.001, 0.003, 0.003, 0.2, 7.0, 4000.0, 0.05]
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    a = Histogram("h_seconds", "h", ["type"], buckets=DURATION_BUCKETS, registry=one_by_one)
    b = Histogram("h_seconds", "h", ["type"], buckets=DURATION_BUCKETS, registry=bulk)
    for v in values:
        a.labels("echo").observe(v)
    tally = Tally("n")
    for v in values:
        tally.observe_duration(("echo", "default"), v)
    buckets = tally.duration[("echo", "default")]
    observe_many(b.labels("echo"), buckets.counts, buckets.total)

    def samples(registry: CollectorRegistry) -> list[str]:
        return [
            line
            for line in generate_latest(registry).decode().splitlines()
            if not line.startswith("h_seconds_created")
        ]

    assert samples(bulk) == samples(one_by_one)
    assert 'h_seconds_bucket{le="0.001",type="echo"} 2.0' in samples(bulk)


def test_the_gauge_snapshot_is_replaced_whole(tmp_path: object) -> None:
    path = str(tmp_path)
    assert read_snapshot(path) is None
    write_snapshot(path, {"node": "a", "workers": 2})
    write_snapshot(path, {"node": "a", "workers": 3})
    assert read_snapshot(path) == {"node": "a", "workers": 3}
