"""Metrics are declared once (metrics.DEFINITIONS): the Tally publishes each field to the
metric of its name, and the README names every metric."""

from __future__ import annotations

import uuid
from dataclasses import fields
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from jobfleet.metrics import DEFINITIONS, NODE
from jobfleet.supervisor.tally import COUNTED, Tally

README = Path(__file__).resolve().parents[2] / "README.md"


def exposed_name(key: str) -> str:
    d = DEFINITIONS[key]
    return d.name if d.buckets is not None else f"{d.name}_total"


def test_every_tally_field_feeds_a_defined_metric_of_its_kind() -> None:
    tally = Tally("n")
    assert {f.name for f in fields(tally)} - set(COUNTED) == {"node", "_published"}
    for counted in fields(tally):
        if counted.name not in COUNTED:
            continue
        assert counted.name in DEFINITIONS, counted.name
        # Histograms are counted in buckets; counters in Counters or ints.
        is_histogram = "_Buckets" in str(counted.type)
        assert is_histogram == (DEFINITIONS[counted.name].buckets is not None), counted.name


def test_publish_writes_each_kind_with_the_node_label_and_starts_from_zero() -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    tally = Tally(node)
    tally.retried[("echo", "default")] += 2
    tally.child_restarts["crashed"] += 1
    tally.lease_renewals += 3
    tally.observe_duration(("echo", "default"), 0.003)
    tally.observe_batch(7)
    tally.publish()

    text = generate_latest(REGISTRY).decode()
    assert 'jobfleet_jobs_retried_total{queue="default",type="echo"} 2.0' in text
    assert f'jobfleet_child_restarts_total{{node="{node}",reason="crashed"}} 1.0' in text
    assert f'jobfleet_lease_renewals_total{{node="{node}"}} 3.0' in text
    assert f'jobfleet_late_completions_total{{node="{node}"}} 0.0' in text
    assert f'jobfleet_claim_batch_size_count{{node="{node}"}} 1.0' in text
    assert f'jobfleet_claim_batch_size_sum{{node="{node}"}} 7.0' in text
    assert 'jobfleet_job_duration_seconds_bucket{le="0.005",queue="default",type="echo"}' in text

    assert not tally.retried and not tally.child_restarts and not tally.duration
    assert tally.lease_renewals == 0 and tally.claim_batch_size.total == 0


def test_publishing_again_adds_only_what_was_counted_since() -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    tally = Tally(node)
    tally.publish()  # nothing counted: the node's counters are shown at zero
    text = generate_latest(REGISTRY).decode()
    assert f'jobfleet_lease_renewals_total{{node="{node}"}} 0.0' in text
    assert f'jobfleet_claim_batch_size_count{{node="{node}"}}' not in text

    tally.lease_renewals += 2
    tally.observe_batch(3)
    tally.publish()
    tally.publish()  # nothing new: nothing added twice
    tally.lease_renewals += 1
    tally.publish()
    text = generate_latest(REGISTRY).decode()
    assert f'jobfleet_lease_renewals_total{{node="{node}"}} 3.0' in text
    assert f'jobfleet_claim_batch_size_count{{node="{node}"}} 1.0' in text
    assert f'jobfleet_claim_batch_size_sum{{node="{node}"}} 3.0' in text


def test_node_metrics_take_the_node_label_first() -> None:
    for key, d in DEFINITIONS.items():
        assert "node" not in d.labels[1:], key
    assert DEFINITIONS["child_restarts"].labels[:1] == NODE


def test_the_readme_names_every_metric() -> None:
    text = README.read_text()
    missing = [exposed_name(key) for key in DEFINITIONS if f"`{exposed_name(key)}`" not in text]
    assert missing == []
