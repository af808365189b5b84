"""`jobfleet bench`: a tiny run of each of our scenarios (the hidden --quick sizes) through the
real command, asserting the JSON's shape and sanity: every job drained, ratios present and
positive, scratch databases dropped. Figures are never asserted against targets: they depend
on the machine."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.conftest import Cli

QUICK_TIMEOUT = 120


def bench(cli: Cli, *scenarios: str) -> dict[str, Any]:
    # Offline: a peer the bench would install (Graphile Worker beside the latency) is used
    # if already there, else skipped: the suite installs nothing.
    result = cli("bench", "--json", "--quick", "--scenario", ",".join(scenarios),
                 timeout=QUICK_TIMEOUT, env={"JOBFLEET_BENCH_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    data: dict[str, Any] = json.loads(result.stdout)
    assert list(data["scenarios"]) == list(scenarios)
    for name in scenarios:
        assert "error" not in data["scenarios"][name], data["scenarios"][name]
    assert data["machine"]["cores"] >= 1
    assert data["machine"]["fsync"] in ("on", "off")
    return data


def ratio(data: dict[str, Any], name: str) -> float:
    found = {r["name"]: r for r in data["ratios"]}
    assert name in found, f"no ratio {name} in {sorted(found)}"
    value = found[name]["value"]
    assert value > 0
    return float(value)


def existing(admin_url: str, names: list[str]) -> list[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)
        ).fetchall()
    return [r[0] for r in rows]


def test_ceiling_drain_million_and_cpu_drain_every_job(cli: Cli) -> None:
    data = bench(cli, "ceiling", "drain", "million", "cpu")
    s = data["scenarios"]
    rounds = data["sizes"]["rounds"]
    assert s["ceiling"]["drained"] == s["ceiling"]["jobs"] == s["ceiling"]["succeeded"]
    assert s["ceiling"]["jobs_per_s"] > 0
    ceiling_rounds = s["ceiling"]["rounds"]
    assert len(ceiling_rounds) == rounds
    assert all(r["drained"] == r["succeeded"] == s["ceiling"]["jobs"] for r in ceiling_rounds)
    # The reported rate is the median round's.
    middle = sorted(r["jobs_per_s"] for r in ceiling_rounds)[(rounds - 1) // 2]
    assert s["ceiling"]["jobs_per_s"] == middle
    assert [r["jobs"] for r in s["drain"]["runs"]] == list(data["sizes"]["drain_jobs"])
    paired_rounds = data["sizes"]["paired_rounds"]
    for run in s["drain"]["runs"]:
        assert run["succeeded"] == run["jobs"]
        assert run["jobs_per_s"] > 0 and run["wall_jobs_per_s"] > 0
        biggest = run is s["drain"]["runs"][-1]
        assert len(run["rounds"]) == (paired_rounds if biggest else rounds)
        assert all(r["succeeded"] == run["jobs"] for r in run["rounds"])
        assert run["wall_jobs_per_s"] in [r["wall_jobs_per_s"] for r in run["rounds"]]
    # Fresh fills are the figures; analysed ones are reported beside the ceiling and the
    # biggest drain.
    assert s["ceiling"]["fill"] == s["drain"]["fill"] == s["million"]["fill"] == "fresh"
    analysed = s["ceiling"]["analysed"]
    assert len(analysed["rounds"]) == rounds and analysed["drained"] == s["ceiling"]["jobs"]
    assert [("analysed" in run) for run in s["drain"]["runs"]][-1:] == [True]
    assert s["drain"]["runs"][-1]["analysed"]["succeeded"] == s["drain"]["runs"][-1]["jobs"]
    # The biggest drain's fresh rounds each follow a ceiling round of their own, and its
    # ratios to the ceiling are to those rounds' median.
    biggest = s["drain"]["runs"][-1]
    assert len(biggest["ceiling_rounds"]) == paired_rounds
    assert "ceiling_rounds" not in s["drain"]["runs"][0]
    paired = sorted(biggest["ceiling_rounds"])[(paired_rounds - 1) // 2]
    assert biggest["ceiling_jobs_per_s"] == paired
    assert ratio(data, "noop_wall_vs_ceiling") == pytest.approx(biggest["wall_jobs_per_s"] / paired)
    assert s["million"]["succeeded"] == s["million"]["jobs"] == data["sizes"]["million_jobs"]
    # The million's ratio is to a ceiling round of its own count, run just before it.
    own = s["million"]["ceiling_jobs_per_s"]
    assert ratio(data, "million_wall_vs_ceiling") == pytest.approx(
        s["million"]["wall_jobs_per_s"] / own
    )
    assert ratio(data, "million_wall_vs_ceiling_100k") == pytest.approx(
        s["million"]["wall_jobs_per_s"] / s["ceiling"]["jobs_per_s"]
    )
    assert s["cpu"]["succeeded"] == s["cpu"]["jobs"]
    # Pure Python work cannot beat one core per worker.
    assert s["cpu"]["span_seconds"] >= s["cpu"]["ideal_seconds"] * 0.9
    ratio(data, "noop_vs_ceiling")
    ratio(data, "noop_wall_vs_ceiling")
    ratio(data, "million_wall_vs_ceiling")
    ratio(data, "noop_vs_ceiling_analysed")
    ratio(data, "noop_wall_vs_ceiling_analysed")
    assert ratio(data, "cpu_span_vs_ideal") >= 0.9
    assert ratio(data, "cpu_wall_vs_ideal") >= ratio(data, "cpu_span_vs_ideal")
    targets = {r["name"]: r for r in data["ratios"]}
    assert isinstance(targets["noop_vs_ceiling"]["met"], bool)


def test_enqueue_latency_and_idle(cli: Cli) -> None:
    data = bench(cli, "enqueue", "latency", "idle")
    s = data["scenarios"]
    enq = s["enqueue"]
    for way in ("single", "bulk", "raw_copy"):
        assert enq[way]["jobs_per_s"] > 0
    ratio(data, "bulk_vs_raw_copy")
    # This branch predates the HTTP API: the bench says so rather than failing.
    assert enq["http"] == {"skipped": "HTTP API not available"} or "batch" in enq["http"], enq
    if "clients" in enq["http"]:
        assert [c["clients"] for c in enq["http"]["clients"]] == [1, 8, 32]
        assert all(c["jobs_per_s"] > 0 for c in enq["http"]["clients"])
        assert ratio(data, "http_32_vs_1_client") > 0
    lat = s["latency"]
    for mode in ("idle", "paused", "load"):
        assert lat[mode]["succeeded"] == lat[mode]["jobs"] > 0
        p = lat[mode]["start_ms"]
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
        assert lat[mode]["finish_ms"]["p50"] >= p["p50"]
    for mode in ("idle", "paused"):  # where the time goes, step by step, on one clock
        steps = lat[mode]["steps_ms"]
        assert list(steps) == ["enqueue call", "to the worker", "worker to handler"]
        # The worker may start the job before the client reads its commit's reply (the
        # NOTIFY leaves at the commit, and a claim does not wait for its flush): on a busy
        # machine "to the worker" can be below 0; the job never starts before the call.
        assert steps["enqueue call"] > 0 and steps["enqueue call"] + steps["to the worker"] > 0
        assert steps["worker to handler"] >= 0
        assert sum(steps.values()) < 3 * lat[mode]["start_ms"]["max"] + 1
    assert ratio(data, "idle_start_p99_ms") >= ratio(data, "idle_start_p50_ms")
    graphile = lat["graphile"]
    assert "skipped" in graphile or graphile["samples"] == lat["idle"]["jobs"], graphile
    idle = s["idle"]
    assert idle["cpu_percent"] >= 0 and idle["queries_per_s"] >= 0
    assert "idle_cpu_percent" in {r["name"] for r in data["ratios"]}
    # The idle fleet: every node up and connected (three connections each), its cost shared.
    fleet = idle["fleet"]
    assert fleet["nodes"] == data["sizes"]["idle_nodes"]
    assert fleet["connections"] >= fleet["nodes"]
    assert fleet["queries_per_s_per_node"] == fleet["queries_per_s"] / fleet["nodes"]
    assert "idle_fleet_queries_per_s" in {r["name"] for r in data["ratios"]}


def test_backlog_and_nodes_scale(cli: Cli) -> None:
    data = bench(cli, "backlog", "nodes")
    s = data["scenarios"]
    runs = s["backlog"]["runs"]
    assert [r["backlog"] for r in runs] == list(data["sizes"]["backlogs"])
    for run in runs:
        assert run["drained"] == s["backlog"]["drain"]
    ratio(data, "backlog_large_vs_small")
    nodes = s["nodes"]
    assert [r["nodes"] for r in nodes["by_nodes"]] == list(data["sizes"]["nodes"])
    assert [r["workers"] for r in nodes["by_workers"]] == list(data["sizes"]["worker_counts"])
    assert nodes["ceiling_jobs_per_s"] > 0
    for run in nodes["by_nodes"] + nodes["by_workers"]:
        assert run["succeeded"] == run["jobs"] == data["sizes"]["scale_jobs"]
        assert run["jobs_per_s"] > 0 and run["vs_ceiling"] > 0
        # Every node up and connected while it drained; no more than a handful each.
        assert 1 <= run["connections_per_node"] <= 4, run
    # The worker total stays at the node's default, split over the nodes (at least 1 each).
    for run in nodes["by_nodes"]:
        assert run["workers_per_node"] == max(1, nodes["workers"] // run["nodes"])
    assert nodes["by_nodes"][0]["vs_one_node"] == 1.0
    ratio(data, "nodes_most_vs_best")
    ratio(data, "nodes_best_vs_ceiling")


def test_recovery_runs_the_killed_job_again(cli: Cli) -> None:
    data = bench(cli, "recovery")
    r = data["scenarios"]["recovery"]
    assert len(r["child_ms"]) == data["sizes"]["child_kills"]
    assert len(r["node_ms"]) == data["sizes"]["node_kills"]
    assert all(ms > 0 for ms in r["child_ms"] + r["node_ms"])
    # A dead node's job cannot come back before its lease ran out.
    assert min(r["node_ms"]) >= r["lease_seconds"] * 1000 * 0.5
    assert r["lease_seconds"] > 0


def test_io_runs_every_job_ours_and_the_peers(cli: Cli) -> None:
    data = bench(cli, "io")
    r = data["scenarios"]["io"]
    sizes = data["sizes"]
    for load, jobs in (("async", sizes["io_async_jobs"]), ("threads", sizes["io_thread_jobs"])):
        run = r[load]
        assert run["jobs"] == jobs
        assert run["jobfleet"]["succeeded"] == jobs
        # No worker runs more than its concurrency at once, so nothing beats the ideal.
        assert run["jobfleet"]["wall_seconds"] >= run["ideal_seconds"]
        assert ratio(data, f"io_{load}_wall_vs_ideal") >= 1.0
        # A peer either ran every job (its driver checks) or says why it did not run.
        assert set(run["peers"]) == {"procrastinate", "pgqueuer", "celery"}
        for peer in run["peers"].values():
            assert "error" not in peer, peer
            assert "skipped" in peer or (peer["jobs"] == jobs and peer["jobs_per_s"] > 0)
        if any("jobs_per_s" in peer for peer in run["peers"].values()):
            ratio(data, f"io_{load}_vs_best_peer")


def test_scratch_databases_are_dropped(cli: Cli, admin_url: str) -> None:
    data = bench(cli, "drain")
    assert data["scratch_databases"], "the run made no scratch database"
    assert existing(admin_url, data["scratch_databases"]) == []


def test_text_table_and_progress(cli: Cli) -> None:
    result = cli("bench", "--quick", "--scenario", "drain", timeout=QUICK_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "drain" in result.stdout and "jobs/s" in result.stdout
    # The drain's own ceiling rounds: shown, and its ratios made to them.
    assert "raw ceiling, its rounds beside these" in result.stdout
    assert "no-op drain, start to exit / raw ceiling beside it" in result.stdout
    assert "bench [" in result.stderr  # the progress bar


def test_unknown_scenario_is_bad_input(cli: Cli) -> None:
    result = cli("bench", "--scenario", "nope")
    assert result.returncode == 2
    assert "unknown nope" in result.stderr


@pytest.mark.parametrize("flag", ["--jobs", "--workers"])
def test_counts_must_be_positive(cli: Cli, flag: str) -> None:
    result = cli("bench", flag, "0")
    assert result.returncode == 2
    assert "must be 1 or more" in result.stderr


def test_transactional_drains_both_paths_and_reports_their_ratio(cli: Cli) -> None:
    data = bench(cli, "transactional")
    r = data["scenarios"]["transactional"]
    jobs = data["sizes"]["transactional_jobs"]
    assert r["jobs"] == jobs
    assert len(r["rounds"]) == data["sizes"]["rounds"]
    # Rounds alternate which path goes first; every job of both paths ran once.
    assert [x["first"] for x in r["rounds"]][:2] == ["plain", "transactional"][: len(r["rounds"])]
    for run in r["rounds"] + [r]:
        for path in ("plain", "transactional"):
            assert run[path]["succeeded"] == jobs
            assert run[path]["jobs_per_s"] > 0
    assert r["tx_vs_plain"] == r["transactional"]["jobs_per_s"] / r["plain"]["jobs_per_s"]
    assert ratio(data, "tx_vs_plain") == r["tx_vs_plain"]


def test_limits_drains_with_and_without_limits_that_never_bind(cli: Cli) -> None:
    data = bench(cli, "limits")
    r = data["scenarios"]["limits"]
    for run in (r["plain"], r["limited"]):
        assert len(run["rounds"]) == data["sizes"]["rounds"]
        assert all(x["succeeded"] == r["jobs"] for x in run["rounds"])
    # Every job was counted in and out again.
    assert all(x["claimed_limited"] == r["jobs"] for x in r["limited"]["rounds"])
    assert all(x["counter_after"] == 0 for x in r["limited"]["rounds"])
    (ratio,) = [x for x in data["ratios"] if x["name"] == "limited_vs_unlimited"]
    assert ratio["target"] == ">= 0.8" and ratio["value"] > 0
    # Per key (issue 19): every job counted for its key and out again, over every key.
    keyed = r["keyed"]["rounds"]
    assert all(x["succeeded"] == r["jobs"] for x in keyed)
    assert all(x["claimed_limited"] == r["jobs"] and x["counter_after"] == 0 for x in keyed)
    assert all(x["keys"] == min(r["jobs"], r["keys"]) for x in keyed)
    (ratio,) = [x for x in data["ratios"] if x["name"] == "keyed_vs_unlimited"]
    assert ratio["target"] == ">= 0.6" and ratio["value"] > 0


def test_history_drains_beside_an_idle_and_a_busy_pruner(cli: Cli) -> None:
    data = bench(cli, "history")
    r = data["scenarios"]["history"]
    assert r["history_jobs"] == data["sizes"]["history_jobs"]
    for run in (r["idle"], r["leader"], r["flat_out"]):
        assert len(run["rounds"]) == data["sizes"]["rounds"]
        assert all(x["succeeded"] == r["jobs"] for x in run["rounds"])
    # The quick history is small: the leader and the pruner beside the drains delete all of
    # it (the first flat-out round's first window is before its mark), the drains' jobs stay.
    assert r["pruner"]["history_left"] == 0
    leader_pruned = sum(x["pruned"] for x in r["leader"]["rounds"])
    assert 0 < leader_pruned + r["pruner"]["pruned"] <= r["history_jobs"]
    assert r["ratio"] == r["leader"]["jobs_per_s"] / r["idle"]["jobs_per_s"]
    assert r["flat_out_ratio"] == r["flat_out"]["jobs_per_s"] / r["idle"]["jobs_per_s"]
    assert ratio(data, "pruning_flat_out_vs_idle") == r["flat_out_ratio"]
    (found,) = [x for x in data["ratios"] if x["name"] == "pruning_vs_idle"]
    assert found["target"] == ">= 0.9" and found["value"] == r["ratio"]


@pytest.mark.timeout(QUICK_TIMEOUT * 4)
def test_peers_each_ran_every_job_or_say_why_not(cli: Cli) -> None:
    # Offline: the bench uses what is already installed and installs nothing (no npm, no venv).
    result = cli("bench", "--json", "--quick", "--scenario", "peers", timeout=QUICK_TIMEOUT * 3,
                 env={"JOBFLEET_BENCH_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    r = data["scenarios"]["peers"]
    jobs = data["sizes"]["peer_jobs"]
    assert r["jobfleet"]["succeeded"] == jobs and r["jobfleet"]["jobs_per_s"] > 0
    assert set(r["peers"]) == {
        "procrastinate", "pgqueuer", "celery", "graphile-worker", "dbos", "chancy", "oban"
    }  # fmt: skip
    for name, peer in r["peers"].items():
        assert "error" not in peer, (name, peer)
        if "skipped" in peer:
            assert isinstance(peer["skipped"], str) and peer["skipped"], name
        else:
            assert peer["jobs"] == jobs and peer["jobs_per_s"] > 0, (name, peer)
            assert ratio(data, f"noop_vs_{name}") > 0


def test_a_short_soak_records_a_row_per_sample(cli: Cli) -> None:
    """The soak (run only when named) at the quick sizes: 10 s, a row every 2 s."""
    data = bench(cli, "soak")
    r = data["scenarios"]["soak"]
    sizes = data["sizes"]
    assert r["duration_seconds"] == sizes["soak_seconds"] == 10
    rows = r["rows"]
    assert len(rows) == int(sizes["soak_seconds"] // sizes["soak_sample_seconds"])
    seconds = [row["minute"] * 60 for row in rows]  # a row once each 2 s have passed
    assert all(s >= 2 * (i + 1) for i, s in enumerate(seconds)) and seconds == sorted(seconds)
    assert r["offered"] >= sizes["soak_rate"] * sizes["soak_seconds"] * 0.9
    for row in rows:
        assert row["offered_jobs_per_s"] > 0 and row["finished_jobs_per_s"] > 0
        assert row["start_samples"] > 0 and row["start_p50_ms"] <= row["start_p99_ms"]
        assert row["jobs_table_mib"] > 0 and row["jobs_index_mib"] > 0
        assert row["jobs_dead_tuples"] >= 0 and row["log_table_mib"] >= 0
        assert row["supervisor_rss_mib"] > 0 and row["worker_rss_mib"] > 0
        assert row["load_average"] >= 0
    assert set(r["growth"]) >= {"jobs_dead_tuples", "supervisor_rss_mib", "start_p99_ms"}
    assert "soak" not in [r["name"] for r in data["ratios"]]


def test_soak_duration_is_parsed_like_the_other_durations(cli: Cli) -> None:
    result = cli("bench", "--json", "--quick", "--scenario", "soak", "--duration", "4s",
                 timeout=QUICK_TIMEOUT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    soak = json.loads(result.stdout)["scenarios"]["soak"]
    assert soak["duration_seconds"] == 4 and len(soak["rows"]) == 2
    bad = cli("bench", "--scenario", "soak", "--duration", "20 minutes")
    assert bad.returncode == 2
    assert "--duration" in bad.stderr and "is not a duration" in bad.stderr
