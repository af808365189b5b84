"""The peers scenario's decisions, alone: why a peer is skipped, how the bench reaches the
database from Node, where Graphile Worker is cached, and the report's line per peer."""

from __future__ import annotations

import sys
from pathlib import Path

from jobfleet.bench import peer_dbos, peer_graphile, peer_oban, peers, report


def test_missing_modules_come_before_any_other_reason() -> None:
    reason = peers.skip_reason(["dbos"], "node not found")
    assert reason is not None and reason.startswith("not installed: dbos")
    assert peers.skip_reason([], "node not found") == "node not found"
    assert peers.skip_reason([], None) is None


def test_offline_is_read_from_the_environment() -> None:
    assert peers.offline({peers.OFFLINE_ENV: "1"})
    assert peers.offline({peers.OFFLINE_ENV: "yes"})
    assert not peers.offline({peers.OFFLINE_ENV: "0"})
    assert not peers.offline({})


def test_every_drain_peer_has_a_driver_and_the_io_peers_are_among_them() -> None:
    assert set(peers.drivers()) == set(peers.DRAIN_PEERS)
    assert set(peers.PEERS) <= set(peers.DRAIN_PEERS)


def test_node_connection_keeps_a_socket_directory_as_the_host() -> None:
    url = "postgresql://postgres@/bench?host=/var/lib/jobfleet/run&port=5432&requirepeer=x"
    assert peer_graphile.node_connection(url) == {
        "host": "/var/lib/jobfleet/run",
        "port": 5432,
        "user": "postgres",
        "database": "bench",
    }
    tcp = peer_graphile.node_connection("postgresql://u:p%40ss@db.example:6543/q")
    assert tcp == {"host": "db.example", "port": 6543, "user": "u", "password": "p@ss",
                   "database": "q"}  # fmt: skip


def test_dbos_gets_a_sqlalchemy_url_on_psycopg_3() -> None:
    conninfo = "user=postgres dbname=x host=/var/lib/jobfleet/run port=5432 requirepeer=jf"
    assert peer_dbos.sqlalchemy_url(conninfo) == (
        "postgresql+psycopg://postgres@:5432/x?host=%2Fvar%2Flib%2Fjobfleet%2Frun&requirepeer=jf"
    )
    tcp = peer_dbos.sqlalchemy_url("postgresql://u:p%40ss@db.example:6543/q")
    assert tcp == "postgresql+psycopg://u:p%40ss@:6543/q?host=db.example"


def test_graphile_is_cached_per_version_under_xdg_cache_home(tmp_path: Path) -> None:
    home = peer_graphile.cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert home == tmp_path / "jobfleet-bench" / f"graphile-worker-{peer_graphile.VERSION}"
    assert not peer_graphile.installed(home)


def test_the_node_script_and_the_oban_runner_ship_in_the_package() -> None:
    assert peer_graphile.SCRIPT.is_file()
    assert peer_oban.RUNNER.is_file()


def test_oban_takes_the_first_interpreter_of_3_12_or_newer() -> None:
    versions = {"shim": None, "old": (3, 11), "new": (3, 13), "newer": (3, 14)}
    assert peer_oban.pick(["shim", "old", "new", "newer"], versions.get) == "new"
    assert peer_oban.pick(["shim", "old"], versions.get) is None
    assert peer_oban.pick([], versions.get) is None


def test_an_interpreter_is_asked_its_version_and_a_missing_one_has_none(tmp_path: Path) -> None:
    assert peer_oban.version_of(sys.executable) == sys.version_info[:2]
    assert peer_oban.version_of(str(tmp_path / "python3.99")) is None
    fails = tmp_path / "shim"
    fails.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    fails.chmod(0o755)
    assert peer_oban.version_of(str(fails)) is None


def test_oban_venv_is_cached_per_oban_and_python_version(tmp_path: Path) -> None:
    home = peer_oban.venv_dir((3, 13), {"XDG_CACHE_HOME": str(tmp_path)})
    assert home == tmp_path / "jobfleet-bench" / f"oban-{peer_oban.VERSION}-py3.13"


def test_report_lines_give_each_peer_its_rate_and_ratio_or_why_not() -> None:
    r = {
        "jobs": 1000,
        "workers": 2,
        "jobfleet": {"jobs_per_s": 5000.0},
        "peers": {
            "graphile-worker": {"jobs": 1000, "seconds": 0.5, "jobs_per_s": 2000.0},
            "oban": {"skipped": "Oban for Python needs Python 3.12+, not found"},
            "dbos": {"error": "BenchError: it broke\nsecond line"},
        },
    }
    lines = dict(report.SCENARIO_LINES["peers"](r))
    assert lines["jobfleet, 1,000 noop, 2 workers"] == "5,000 jobs/s"
    assert lines["graphile-worker, 1,000 noop, 2 worker processes"] == (
        "2,000 jobs/s (jobfleet 2.5x)"
    )
    assert lines["oban, 1,000 noop, 2 worker processes"] == (
        "skipped: Oban for Python needs Python 3.12+, not found"
    )
    assert lines["dbos, 1,000 noop, 2 worker processes"] == "error: BenchError: it broke"


def test_graphile_latency_sits_beside_ours_in_the_latency_lines() -> None:
    p = {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    ours = {"start_ms": p, "finish_ms": p}
    base = {"idle": ours, "load": {**ours, "offered_jobs_per_s": 10.0}}
    found = report.SCENARIO_LINES["latency"]({**base, "graphile": {"samples": 9, **p}})
    assert found[-1] == (
        "Graphile Worker: add_job -> handler's first line, back to back (9 jobs)",
        "p50 1.00 / p95 2.00 / p99 3.00 ms",
    )
    skipped = report.SCENARIO_LINES["latency"]({**base, "graphile": {"skipped": "node not found"}})
    assert skipped[-1][1] == "skipped: node not found"
    assert len(report.SCENARIO_LINES["latency"](base)) == len(found) - 1
