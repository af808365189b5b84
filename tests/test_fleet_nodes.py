"""Whole nodes: killed, paused, leading, many on one database, cut off from it."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin
from tests.conftest import Cli, all_finished, scalar, wait_until
from tests.fleet_support import FAST, attempts, double_successes, running_count, running_on


def test_killing_a_whole_node_hands_its_jobs_to_the_others(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    ids = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.3}] * 40)
    a = fleet("a", "--workers", "2", env=FAST)
    wait_until(
        lambda: running_count(conn),
        what="node a to run jobs",
    )
    b = fleet("b", "--workers", "2", env=FAST)
    c = fleet("c", "--workers", "2", env=FAST)
    wait_until(
        lambda: scalar(
            conn, "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE 'a/%'"
        ),
        what="node a to hold jobs",
    )
    a.kill()
    wait_until(lambda: all_finished(conn), timeout=60, what="every job to finish")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == len(ids)
    assert double_successes(conn) == 0
    lost = conn.execute("SELECT node, error FROM job_attempts WHERE outcome = 'lost'").fetchall()
    assert lost and all(n == "a" and "lease expired" in e for n, e in lost)
    finishers = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT node FROM job_attempts WHERE outcome = 'succeeded' AND job_id IN "
            "(SELECT job_id FROM job_attempts WHERE outcome = 'lost')"
        )
    }
    assert finishers <= {"b", "c"} and finishers
    for node in (b, c):
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 0


def test_paused_node_cannot_overwrite_the_newer_attempt(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 1.0})
    a = fleet("a", "--workers", "1", env=FAST)
    wait_until(lambda: running_on(conn, job) == "a", what="node a to run the job")
    a.signal(signal.SIGSTOP)  # its child finishes, but the result stays in the socket
    b = fleet("b", "--workers", "1", env=FAST)
    wait_until(
        lambda: scalar(conn, "SELECT state FROM jobs") == "succeeded",
        timeout=60,
        what="node b to run the job again",
    )
    a.signal(signal.SIGCONT)
    wait_until(
        lambda: "late results dropped" in a.log(), timeout=30, what="node a to drop its late result"
    )
    history = attempts(conn, job)
    assert [(n, o, node) for n, o, node, _ in history] == [(1, "lost", "a"), (2, "succeeded", "b")]
    assert scalar(conn, "SELECT attempt FROM jobs") == 2
    for node in (a, b):
        node.signal(signal.SIGTERM)
        assert node.wait(30) == 0


def test_leadership_passes_when_the_leader_dies(conn: psycopg.Connection[Any], fleet: Any) -> None:
    a = fleet("a", "--workers", "1", env=FAST)
    wait_until(lambda: "leading maintenance" in a.log(), what="a to lead")
    b = fleet("b", "--workers", "1", env=FAST)
    wait_until(lambda: "node started" in b.log(), what="b to start")
    assert "leading maintenance" not in b.log()
    a.kill()
    wait_until(lambda: "leading maintenance" in b.log(), timeout=30, what="b to take over")


def test_ten_supervisors_hold_bounded_connections(
    conn: psycopg.Connection[Any], fleet: Any, db_url: str
) -> None:
    nodes = [fleet(f"n{i}", "--workers", "2", env=FAST) for i in range(10)]
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM nodes") == 10,
        timeout=60,
        what="ten nodes to register",
    )
    ids = jobfleet.enqueue_many(conn, "noop", list(range(500)))
    wait_until(lambda: all_finished(conn), timeout=60, what="the jobs to finish")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == len(ids)
    count = scalar(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = "
        "current_database() AND application_name = 'jobfleet'",
    )
    assert count <= 10 * 3, count  # two lanes and the control connection
    for node in nodes:
        node.signal(signal.SIGTERM)
    assert [node.wait(60) for node in nodes] == [0] * 10


def test_lost_database_connections_lose_nothing(conn: psycopg.Connection[Any], fleet: Any) -> None:
    ids = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 0.05}] * 200)
    node = fleet("a", "--workers", "2", env=FAST)
    for _ in range(3):  # cut every connection the node has, three times during the run
        wait_until(
            lambda: running_count(conn),
            what="jobs to be running",
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
            "application_name = 'jobfleet' AND datname = current_database() AND "
            "pid <> pg_backend_pid()"
        )
    wait_until(lambda: all_finished(conn), timeout=90, what="every job to finish")
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") == len(ids)
    assert double_successes(conn) == 0
    assert "database unreachable" in node.log()
    node.signal(signal.SIGTERM)
    assert node.wait(30) == 0


def test_leader_prunes_finished_jobs_past_retention(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    old_ok, old_cancelled, recent, dead = (jobfleet.enqueue(conn, "echo") for _ in range(4))
    admin.cancel(conn, old_cancelled)
    # As if made three hours ago: the old ones finished two hours ago, `recent` just now.
    conn.execute("UPDATE jobs SET created_at = now() - interval '3 hours'")
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '2 hours' "
        "WHERE id = %s",
        (old_ok,),
    )
    conn.execute(
        "UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = %s", (old_cancelled,)
    )
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = %s", (recent,)
    )
    conn.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now() - interval '2 hours' WHERE id = %s",
        (dead,),
    )
    # Jobs made since, which the pruner's scan stops at, however many there are.
    young = jobfleet.enqueue_many(conn, "echo", [None] * 3, delay=3600)
    node = fleet("a", "--workers", "1", env={**FAST, "JOBFLEET_RETENTION_SECONDS": "3600"})
    wait_until(lambda: "pruned finished jobs" in node.log(), what="the pruner to run")
    assert sorted(r[0] for r in conn.execute("SELECT id FROM jobs")) == sorted(
        [recent, dead, *young]
    )


OLD_HISTORY = """
INSERT INTO jobs (type, queue, state, attempt, max_attempts, run_at, created_at, started_at,
                  finished_at, payload)
SELECT 'echo', 'default', 'succeeded', 1, 5, t, t, t, t, 'null'
FROM (SELECT now() - interval '3 hours' AS t) AS c, generate_series(1, %s)
"""


def test_a_pruning_pass_goes_on_slice_after_slice_between_the_nodes_ticks(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    # More history than one slice of the pass prunes (a tenth of a second, a few thousand
    # jobs), and ticks 20 s apart (a third of the lease): the pass must go on at its own pace.
    conn.execute(OLD_HISTORY, (30_000,))
    young = jobfleet.enqueue(conn, "echo", delay=3600)
    node = fleet(
        "a",
        "--workers",
        "1",
        env={"JOBFLEET_RETENTION_SECONDS": "3600", "JOBFLEET_LEASE_SECONDS": "60"},
    )
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM jobs") == 1,
        timeout=30,
        what="the history to be pruned",
    )
    assert scalar(conn, "SELECT id FROM jobs") == young
    assert node.log().count("pruned finished jobs past retention") >= 2, node.log()[-2000:]


def test_a_paused_node_does_not_blame_its_workers_for_the_pause(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    # The whole node (supervisor and workers) stopped past the workers' silence limit: on
    # waking, the workers' old heartbeats are the pause's doing, not theirs.
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 4})
    node = fleet("a", "--workers", "1", env={**FAST, "JOBFLEET_LEASE_SECONDS": "60"})
    wait_until(lambda: running_on(conn, job), what="the job to start")
    os.killpg(node.pid, signal.SIGSTOP)
    # The fault lasts until the node has been silent past the 2 s limit FAST gives workers,
    # as its heartbeat row shows.
    wait_until(
        lambda: scalar(
            conn, "SELECT now() - last_heartbeat > interval '2.5 s' FROM nodes WHERE name = 'a'"
        ),
        what="the pause to outlast the workers' silence limit",
    )
    os.killpg(node.pid, signal.SIGCONT)
    wait_until(lambda: all_finished(conn), what="the job to finish")
    assert attempts(conn, job) == [(1, "succeeded", "a", None)]
    assert "stopped responding" not in node.log()


def test_a_burst_node_waits_for_work_running_elsewhere(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """`--burst` runs until nothing it could run is ready *or running*: a job another node is
    running may fail and come back, so the burst node stays until it is finished."""
    (job_id,) = jobfleet.enqueue_many(conn, "sleep", [{"seconds": 1.5}])
    a = fleet("a", "--workers", "1", env=FAST)
    wait_until(lambda: running_on(conn, job_id) == "a", what="node a to run the job")
    b = fleet("b", "--burst", "--workers", "1", env=FAST)
    assert b.wait(30) == 0
    # Had b looked only at ready jobs it would have left at once, with the job still running.
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job_id,)) == "succeeded"
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0


def test_a_node_restarted_under_its_name_requeues_its_earlier_runs_jobs_at_once(
    conn: psycopg.Connection[Any], fleet: Any
) -> None:
    """Its earlier run's leases still have most of their 30 s to go; the new run does not wait
    for them, and says why the attempt was lost."""
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 60})
    first = fleet("a", "--workers", "1")
    wait_until(lambda: running_on(conn, job) == "a", what="the job to start")
    first.kill()
    first.wait(10)
    fleet("a", "--workers", "1")
    wait_until(
        lambda: (
            scalar(conn, "SELECT attempt FROM jobs WHERE id = %s AND state = 'running'", (job,))
            == 2
        ),
        timeout=20,  # well inside the 30 s lease of the first run
        what="the job to run again on the restarted node",
    )
    [(attempt, outcome, node, error)] = [a for a in attempts(conn, job) if a[1] != "succeeded"]
    assert (attempt, outcome, node) == (1, "lost", "a")
    assert "node a restarted" in error, error


def test_a_killed_nodes_metrics_directory_is_removed_by_the_next_node(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    """A node removes its metrics directory as it exits; one killed with SIGKILL cannot, so
    the next node on the host removes what dead nodes left."""
    env = {**FAST, "TMPDIR": str(tmp_path)}
    first = fleet("a", "--workers", "1", env=env)
    [left] = wait_until(
        lambda: list(tmp_path.glob(f"jobfleet-metrics-{first.pid}-*")),
        what="the first node's metrics directory",
    )
    first.kill()
    first.wait(10)
    assert left.exists()
    second = fleet("b", "--workers", "1", env=env)
    wait_until(
        lambda: list(tmp_path.glob(f"jobfleet-metrics-{second.pid}-*")),
        what="the second node's metrics directory",
    )
    assert not left.exists()


def test_status_shows_busy_workers_as_they_are_not_as_of_the_last_heartbeat(
    conn: psycopg.Connection[Any], fleet: Any, cli: Cli
) -> None:
    def busy() -> int:
        nodes = cli.json("status")["nodes"]
        return int(nodes[0]["busy"]) if nodes else -1

    # Heartbeats 30 s apart: within this test the node's own row keeps what it said at start.
    slow_beat = {"JOBFLEET_NODE_HEARTBEAT_SECONDS": "30", "JOBFLEET_LEASE_SECONDS": "120"}
    fleet("a", "--workers", "2", env=slow_beat)
    wait_until(lambda: busy() == 0, what="the node to show up idle")
    job = jobfleet.enqueue(conn, "sleep", {"seconds": 30})
    wait_until(lambda: running_on(conn, job), what="the job to start")
    wait_until(lambda: busy() == 1, timeout=10, what="status to show the busy worker")
    assert scalar(conn, "SELECT busy FROM nodes") == 0  # what the last heartbeat said
    assert admin.cancel(conn, job) == "running"
    wait_until(lambda: busy() == 0, timeout=10, what="status to show it idle again")


def test_a_name_in_use_is_refused_and_nothing_of_the_refused_node_is_written(
    conn: psycopg.Connection[Any], fleet: Any, cli: Cli
) -> None:
    """The registration runs in one round trip, the name check read after it: the refused
    node's rows (its types' defaults, its node row) must roll back with the refusal."""
    first = fleet("taken", "--workers", "1")
    wait_until(
        lambda: scalar(conn, "SELECT pid FROM nodes WHERE name = 'taken'") == first.pid,
        what="the first node to register",
    )
    conn.execute("DELETE FROM job_types")  # what a second registration would write again
    result = cli("supervisor", "--node-name", "taken", "--workers", "3", "--burst")
    assert result.returncode == 1
    assert f"node name 'taken' is in use by pid {first.pid}" in result.stderr
    row = conn.execute("SELECT pid, workers FROM nodes WHERE name = 'taken'").fetchone()
    assert row == (first.pid, 1)
    assert scalar(conn, "SELECT count(*) FROM job_types") == 0
