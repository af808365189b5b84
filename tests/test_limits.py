"""Limits per job type with real nodes (issue 19): max_running and rate hold across three
nodes claiming at full speed, a change at run time is obeyed, the running counter stays true
through a SIGKILL, and a --burst node waits for jobs a limit holds back."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin, polling, type_limits
from jobfleet.supervisor.node import Node
from jobfleet.worker.registry import HandlerSpec
from tests.conftest import Cli, all_finished, scalar, wait_until
from tests.fleet_support import deepest_overlap, handler_module

HANDLERS = """
import time
from jobfleet.worker import handler

@handler("capped", max_running=3)
def capped(payload):
    time.sleep(payload["seconds"])

@handler("paced", rate="20/s")
def paced(payload):
    time.sleep(payload["seconds"])

@handler("free")
def free(payload):
    time.sleep(payload["seconds"])
"""


def start_nodes(fleet: Any, tmp_path: Any, count: int, workers: int, **env: str) -> list[Any]:
    environment = {**handler_module(tmp_path, "limited_handlers", HANDLERS), **env}
    return [
        fleet(f"n{i}", "--workers", str(workers), "--handlers", "limited_handlers",
              env=environment)
        for i in range(count)
    ]  # fmt: skip


def counter(conn: psycopg.Connection[Any], type: str) -> int:
    """The limit's own count of the type's running jobs."""
    return int(
        scalar(
            conn,
            "SELECT l.claimed - f.finished FROM type_limits l JOIN type_finished f USING (type)"
            " WHERE type = %s",
            (type,),
        )
    )


def running(conn: psycopg.Connection[Any], type: str) -> int:
    return int(
        scalar(conn, "SELECT count(*) FROM jobs WHERE type = %s AND state = 'running'", (type,))
    )


def test_max_running_holds_across_three_nodes_claiming_at_full_speed(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    jobfleet.enqueue_many(conn, "capped", [{"seconds": 0.2}] * 60)
    jobfleet.enqueue_many(conn, "free", [{"seconds": 0.01}] * 200)
    # One worker each: a node holds two jobs at most (one running, one waiting its turn), so a
    # full limit is always shared by nodes.
    start_nodes(fleet, tmp_path, 3, 1)
    seen = 0

    def left() -> object:  # what was left when the watch gave up
        return (
            conn.execute(
                "SELECT type, state, limited, count(*) FROM jobs GROUP BY 1,2,3"
            ).fetchall(),
            conn.execute("SELECT * FROM type_limits").fetchall(),
            conn.execute("SELECT * FROM type_finished").fetchall(),
        )

    # At every look until all ended, never more than 3 running.
    for _ in polling.paced(
        0.02, until=lambda: all_finished(conn), timeout=90, what=left, error=AssertionError
    ):
        seen = max(seen, running(conn, "capped"))
    assert seen == 3, seen  # the limit was reached, never passed
    intervals = conn.execute(
        "SELECT a.started_at, a.finished_at FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE j.type = 'capped'"
    ).fetchall()
    assert len(intervals) == 60
    assert deepest_overlap(intervals) <= 3
    nodes = conn.execute(
        "SELECT count(DISTINCT node) FROM job_attempts a JOIN jobs j ON j.id = a.job_id"
        " WHERE j.type = 'capped'"
    ).fetchone()
    assert nodes is not None and nodes[0] >= 2
    assert counter(conn, "capped") == 0


def test_rate_holds_in_every_window_across_three_nodes(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # Jobs of 0.4 s, so that each is seen running by a look every 0.1 s: its started_at is
    # then the time of its claim (a success records the handler's own start over it).
    jobfleet.enqueue_many(conn, "paced", [{"seconds": 0.4}] * 200)
    start_nodes(fleet, tmp_path, 3, 4)
    claims: dict[tuple[int, int], datetime] = {}
    wait_until(lambda: running(conn, "paced") > 0, what="the first claim")
    for _ in polling.paced(0.1, seconds=6.5):
        for job, attempt, started in conn.execute(
            "SELECT id, attempt, started_at FROM jobs WHERE type = 'paced' AND state = 'running'"
        ):
            claims.setdefault((job, attempt), started)
    times = sorted(claims.values())
    start = times[0]
    in_five = [t for t in times if t < start + timedelta(seconds=5)]
    # At most 20 in any one-second window [t, t + 1 s): the worst windows begin at a claim.
    worst = max(
        sum(1 for u in times if t <= u < t + timedelta(seconds=1)) for t in times
    )  # fmt: skip
    assert worst <= 20
    assert 90 <= len(in_five) <= 100, len(in_five)


def test_types_set_changes_a_limit_at_run_time_and_none_removes_it(
    cli: Cli, conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    jobfleet.enqueue_many(conn, "capped", [{"seconds": 0.3}] * 300)
    start_nodes(fleet, tmp_path, 2, 4)
    wait_until(lambda: running(conn, "capped") == 3, what="the declared limit reached")
    cli.ok("types", "set", "capped", "--max-running", "1")
    changed = time.monotonic()
    # Jobs already claimed finish; within a second or so one at most runs, and stays so.
    wait_until(lambda: running(conn, "capped") <= 1, timeout=5, what="the new limit obeyed")
    assert time.monotonic() - changed < 2.0
    for _ in polling.paced(0.05, count=10):
        assert running(conn, "capped") <= 1
    cli.ok("types", "set", "capped", "--max-running", "none")
    wait_until(lambda: running(conn, "capped") > 3, timeout=5, what="no limit any more")
    (shown,) = [t for t in cli.json("types", "list", "--json") if t["type"] == "capped"]
    assert shown["max_running"] is None and shown["set_at_run_time"] == ["max_running"]
    assert shown["declared"] == {"max_running": 3, "rate": None, "limit_key": None}
    cli.ok("types", "set", "capped", "--max-running", "default")
    wait_until(lambda: running(conn, "capped") <= 3, timeout=5, what="the declared limit back")


def test_the_counter_is_exact_after_a_node_is_killed_holding_limited_jobs(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    jobfleet.enqueue_many(conn, "capped", [{"seconds": 30}] * 3, priority=1)
    quick = jobfleet.enqueue_many(conn, "capped", [{"seconds": 0.05}] * 5)
    (doomed,) = start_nodes(fleet, tmp_path, 1, 3)
    wait_until(lambda: running(conn, "capped") == 3, what="the limit full")
    assert counter(conn, "capped") == 3
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()
    start_nodes(fleet, tmp_path, 1, 3)  # its reaper requeues the lost attempts
    # Lost once, the long jobs run again; the quick ones get their turn only as they end, so
    # cancel the long ones: the counter follows every way out of `running`.
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM job_attempt_log WHERE outcome = 'lost'") == 3,
        what="the reaper",
    )
    assert counter(conn, "capped") == running(conn, "capped") <= 3
    for (job,) in conn.execute("SELECT id FROM jobs WHERE NOT (id = ANY(%s))", (quick,)):
        admin.cancel(conn, job)
    wait_until(lambda: all_finished(conn), timeout=30, what="every job to end")
    assert counter(conn, "capped") == 0
    states = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (quick,)))
    assert set(states.values()) == {"succeeded"}


def test_a_burst_node_waits_for_jobs_a_limit_holds_back(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "limited_handlers", HANDLERS)
    cli.ok("types", "set", "capped", "--max-running", "1")
    cli.ok("types", "set", "paced", "--rate", "4/s")
    jobfleet.enqueue_many(conn, "capped", [{"seconds": 0.05}] * 6)
    jobfleet.enqueue_many(conn, "paced", [{"seconds": 0}] * 10)
    began = time.monotonic()
    cli.ok("supervisor", "--burst", "--workers", "3", "--handlers", "limited_handlers", env=env)
    assert time.monotonic() - began >= 1.0  # 10 at 4 a second: three windows at least
    assert all_finished(conn)
    assert scalar(conn, "SELECT count(*) FROM jobs WHERE state <> 'succeeded'") == 0
    assert counter(conn, "capped") == counter(conn, "paced") == 0


def test_the_recount_adopts_jobs_running_from_before_a_limit(
    conn: psycopg.Connection[Any],
) -> None:
    ids = jobfleet.enqueue_many(conn, "work", [{}] * 4)
    conn.execute(
        "UPDATE jobs SET state = 'running', attempt = 1, locked_by = 'n/1',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = ANY(%s)",
        (ids[:3],),
    )
    shown = type_limits.set_limits(conn, "work", max_running="2")
    assert shown["max_running"] == 2 and shown["running"] == 3
    assert counter(conn, "work") == 3  # the three count: no claim gets room until one ends
    conn.execute("UPDATE type_limits SET claimed = claimed + 5 WHERE type = 'work'")
    assert type_limits.recount(conn, ["work"]) == [("work", 8, 3, 0, None)]
    assert counter(conn, "work") == 3


def test_the_databases_window_is_the_one_the_node_reads(conn: psycopg.Connection[Any]) -> None:
    log = [10.0, 5.0, 10.5, 10.0, 10.9, 5.0]
    for at in (10.95, 11.0, 11.6, 20.0):
        used = scalar(conn, "SELECT jobfleet_rate_used(%s, %s, 1)", (log, at))
        assert used == type_limits.rate_used(log, at, 1.0)
    # A claim close behind the last pair joins it at its own, later time; others append;
    # pairs out of the window go.
    assert scalar(conn, "SELECT jobfleet_rate_logged(%s, 10.905, 1, 3)", (log,)) == [
        10.0, 5.0, 10.5, 10.0, 10.905, 8.0
    ]  # fmt: skip
    assert scalar(conn, "SELECT jobfleet_rate_logged(%s, 11.2, 1, 2)", (log,)) == [
        10.5, 10.0, 10.9, 5.0, 11.2, 2.0
    ]  # fmt: skip
    assert scalar(conn, "SELECT jobfleet_rate_logged(%s, 30, 1, 0)", (log,)) == []


def test_get_types_shows_defaults_limits_and_running(
    client: Any, conn: psycopg.Connection[Any]
) -> None:
    from tests.http_support import bearer, make_key

    type_limits.set_limits(conn, "charge", max_running="5", rate="100/m")
    answer = client.get("/types", headers=bearer(make_key(conn, "reader", "read")))
    assert answer.status_code == 200
    assert answer.json()["types"] == [
        {
            "type": "charge",
            "queue": None,
            "priority": None,
            "max_attempts": None,
            "timeout": None,
            "backoff": None,
            "backoff_seconds": None,
            "max_running": 5,
            "rate": "100/m",
            "limit_key": None,
            "declared": {"max_running": None, "rate": None, "limit_key": None},
            "set_at_run_time": ["max_running", "rate"],
            "running": 0,
            "rate_used": 0,
        }
    ]


def test_a_starting_node_locks_its_types_limits_in_the_order_claims_do(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """A node's registration locks each of its types' limits rows; the claims of limited
    types and the limits' recount lock them in name order, so the registration does too. In
    its handlers' order, a node starting beside running ones deadlocked with their claims and
    left at once (seen with three nodes started together)."""
    declared = ("zeta", "alpha")  # the handlers' order, not their names'
    handlers = {
        t: HandlerSpec(t, lambda p: p, takes_context=False, max_running=1) for t in declared
    }
    node = Node("registering", handlers, None)
    with psycopg.connect(db_url, autocommit=True) as first:
        node.register(first, workers=1, stale_after=30)  # the rows are there now
    failed: list[BaseException] = []

    def register_again(c: psycopg.Connection[Any]) -> None:
        try:
            node.register(c, workers=1, stale_after=30)
        except BaseException as exc:
            failed.append(exc)

    with (
        psycopg.connect(db_url) as claimer,
        psycopg.connect(db_url, autocommit=True) as prober,
        psycopg.connect(db_url, autocommit=True) as registering,
    ):
        # A claim of both types holds the first by name and comes for the second next.
        claimer.execute("SELECT type FROM type_limits WHERE type = 'alpha' FOR UPDATE")
        thread = threading.Thread(target=register_again, args=(registering,))
        thread.start()
        pid = registering.info.backend_pid
        wait_until(
            lambda: (
                scalar(conn, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
                == "Lock"
            ),
            what="the registration to wait for the first type's row",
        )
        try:
            # Waiting for the first, it holds nothing of the second: the claim's next lock is
            # free (LockNotAvailable when the registration took the handlers' order).
            prober.execute("SELECT type FROM type_limits WHERE type = 'zeta' FOR UPDATE NOWAIT")
        finally:
            claimer.commit()
            thread.join(30)
    assert not thread.is_alive() and failed == []
