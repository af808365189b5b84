"""Many jobs per worker: async handlers on the worker's event loop, plain ones on threads
(`concurrency=`), with real workers, real kills and real signals."""

from __future__ import annotations

import os
import signal
from typing import Any

import psycopg

import jobfleet
from jobfleet import admin
from tests.conftest import all_finished, scalar, wait_until
from tests.fleet_support import attempts, deepest_overlap, handler_module

HANDLERS = """
import asyncio, os, time
from jobfleet.worker import handler, on_worker_start

OPENED_ON = {}

@on_worker_start
async def open_client():
    # What an aiohttp session or an async pool needs: the loop its handlers run on.
    OPENED_ON["loop"] = asyncio.get_running_loop()

@handler("same_loop", concurrency=2)
async def same_loop(payload):
    return asyncio.get_running_loop() is OPENED_ON.get("loop")

@handler("gil_hog", max_attempts=1)
def gil_hog(payload):
    # One C call that holds the GIL for about `seconds`: no other thread of the worker (its
    # heartbeat) runs meanwhile. sum() over a range never lets go of it. Sized by the fastest
    # of a few short runs; a machine whose load dropped since runs it faster, so a call that
    # came out short is made again twice as long. The answer: the longest hold.
    fastest = 1.0
    for _ in range(5):
        t = time.perf_counter()
        sum(range(1_000_000))
        fastest = min(fastest, time.perf_counter() - t)
    n = int(1_000_000 * payload["seconds"] / max(fastest, 1e-6))
    longest = 0.0
    for _ in range(4):
        t = time.perf_counter()
        sum(range(n))
        longest = max(longest, time.perf_counter() - t)
        if longest >= payload["seconds"]:
            break
        n *= 2
    return longest

@handler("hog", concurrency=2, max_attempts=1)
async def hog(payload):
    time.sleep(payload["seconds"])  # a blocking call in async def: the loop stops
    return "done"

KEPT = []

@handler("grow", concurrency=2)
async def grow(payload):
    # Memory the worker keeps after the job: past max_rss, with no job to come.
    KEPT.append(bytearray(b"\x01") * (payload["mb"] << 20))
    return os.getpid()

@handler("nap", concurrency=100)
async def nap(payload, ctx):
    started = time.time()
    ctx.progress(0.01, str(os.getpid()))
    if ctx.attempt == 1:
        await asyncio.sleep(payload["seconds"])
    return {"started": started, "ended": time.time(), "pid": os.getpid()}

@handler("overrun", concurrency=10, timeout=0.5, max_attempts=1)
async def overrun(payload):
    await asyncio.sleep(60)

@handler("stoppable", concurrency=10)
async def stoppable(payload, ctx):
    ctx.progress(0.01)
    await asyncio.sleep(60)

@handler("io", concurrency=4)
def io(payload, ctx):
    ctx.progress(0.01)
    if ctx.attempt == 1:
        time.sleep(payload["seconds"])
    return {"pid": os.getpid()}

@handler("stuck", concurrency=2, timeout=0.5, max_attempts=1)
def stuck(payload, ctx):
    ctx.progress(0.01)
    time.sleep(60)

@handler("not_awaited", max_attempts=1)
def not_awaited(payload):
    return asyncio.sleep(0)
"""


def started(conn: psycopg.Connection[Any], ids: list[int]) -> int:
    """How many of the jobs have reported that they run (their first progress)."""
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'running' "
            "AND progress IS NOT NULL",
            (ids,),
        )
    )


def test_async_jobs_overlap_in_each_worker(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    ids = jobfleet.enqueue_many(conn, "nap", [{"seconds": 0.5}] * 200)
    node = fleet("a", "--workers", "2", "--burst", "--handlers", "many_handlers", env=env)
    assert node.wait(120) == 0, node.log_tail()
    results = [r for (r,) in conn.execute("SELECT result FROM jobs WHERE id = ANY(%s)", (ids,))]
    assert len(results) == 200 and all(r is not None for r in results)
    # 200 jobs of 0.5 s, one at a time on 2 workers, take 50 s: here far more ran at once.
    assert deepest_overlap([(r["started"], r["ended"]) for r in results]) >= 100
    assert len({r["pid"] for r in results}) == 2
    assert scalar(conn, "SELECT count(*) FROM job_attempt_log WHERE job_id = ANY(%s)", (ids,)) == 0


def test_a_timeout_or_a_cancel_leaves_the_other_jobs_of_the_worker_alone(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    overrun = jobfleet.enqueue(conn, "overrun")
    stoppable = jobfleet.enqueue(conn, "stoppable")
    naps = jobfleet.enqueue_many(conn, "nap", [{"seconds": 1.5}] * 20)
    fleet("a", "--workers", "1", "--handlers", "many_handlers", env=env)
    wait_until(lambda: started(conn, [stoppable]) == 1, what="the job to cancel to start")
    assert jobfleet.cancel(stoppable, conn=conn) == "running"
    wait_until(lambda: all_finished(conn), timeout=60, what="every job to end")

    assert attempts(conn, overrun)[0][1:2] == ("timed_out",)
    assert "timeout after 0.5 s" in attempts(conn, overrun)[0][3]
    assert scalar(conn, "SELECT state FROM jobs WHERE id = %s", (stoppable,)) == "cancelled"
    assert attempts(conn, stoppable)[0][1] == "cancelled"
    # The worker was never replaced: every nap ran once, in the one worker, and succeeded.
    rows = conn.execute("SELECT state, attempt, result FROM jobs WHERE id = ANY(%s)", (naps,))
    naps_seen = rows.fetchall()
    assert {(state, attempt) for state, attempt, _ in naps_seen} == {("succeeded", 1)}
    assert len({result["pid"] for _, _, result in naps_seen}) == 1


def test_kill_9_of_a_worker_holding_50_async_jobs_records_50_crashes_and_runs_them_again(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    ids = jobfleet.enqueue_many(conn, "nap", [{"seconds": 60}] * 50)
    fleet("a", "--workers", "1", "--handlers", "many_handlers", env=env)
    wait_until(lambda: started(conn, ids) == 50, what="50 jobs running in the worker")
    # status counts the jobs as they run: 50, on its one busy worker.
    (node,) = admin.status(conn)["nodes"]
    assert (node["workers"], node["busy"], node["running"]) == (1, 1, 50)
    (pid,) = {
        int(m)
        for (m,) in conn.execute("SELECT progress->>'message' FROM jobs WHERE id = ANY(%s)", (ids,))
    }
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all_finished(conn), timeout=60, what="the jobs to run again")
    for job in ids:
        history = attempts(conn, job)
        assert [(a, outcome) for a, outcome, _, _ in history] == [(1, "crashed"), (2, "succeeded")]
        assert "killed by signal 9" in history[0][3]


def test_a_thread_that_overruns_its_timeout_gets_its_worker_replaced(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    ios = jobfleet.enqueue_many(conn, "io", [{"seconds": 30}] * 3)
    fleet("a", "--workers", "1", "--handlers", "many_handlers", env=env)
    wait_until(lambda: started(conn, ios) == 3, what="the threaded jobs to start")
    stuck = jobfleet.enqueue(conn, "stuck")
    wait_until(lambda: all_finished(conn), timeout=60, what="every job to end")

    (only,) = attempts(conn, stuck)
    assert only[1] == "timed_out" and "timeout after 0.5 s" in only[3]
    # As the README says: the jobs beside it were cut short, recorded as crashes naming the
    # job that brought the worker down, and ran again.
    for job in ios:
        first, second = attempts(conn, job)
        assert first[1] == "crashed" and f"stopped over job {stuck}" in first[3]
        assert second[1] == "succeeded"


def test_sigterm_drains_every_job_in_flight_and_hands_back_the_waiting(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # 10 running at once (io: 4 threads, nap: up to 100 on the loop), more waiting.
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    ios = jobfleet.enqueue_many(conn, "io", [{"seconds": 1.0}] * 8)
    naps = jobfleet.enqueue_many(conn, "nap", [{"seconds": 1.0}] * 6)
    node = fleet("a", "--workers", "1", "--handlers", "many_handlers", env=env)
    wait_until(lambda: started(conn, ios + naps) >= 10, what="jobs to start")
    node.signal(signal.SIGTERM)
    assert node.wait(60) == 0, node.log_tail()
    states = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (ios + naps,)))
    assert all(states[n] == "succeeded" for n in naps)
    # Every job that started finished; those still waiting for a thread went back unspent.
    assert set(states.values()) <= {"succeeded", "queued"}
    assert scalar(conn, "SELECT count(*) FROM job_attempt_log") == 0
    unspent = scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'queued' AND attempt = 0")
    assert unspent == sum(1 for s in states.values() if s == "queued")


def test_a_plain_handler_that_returns_a_coroutine_is_told_to_be_async(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    job, _ = one_job_on_a_burst_node(conn, fleet, tmp_path, "not_awaited")
    assert job["state"] == "dead" and "declare it `async def`" in job["error"]


def one_job_on_a_burst_node(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any, type: str, payload: Any = None
) -> tuple[dict[str, Any], Any]:
    """Run one job of `type` on a one-worker burst node to its end: the job, and the node."""
    env = handler_module(tmp_path, "many_handlers", HANDLERS)
    job = jobfleet.enqueue(conn, type, payload)
    node = fleet("a", "--workers", "1", "--burst", "--handlers", "many_handlers", env=env)
    assert node.wait(60) == 0, node.log_tail()
    return jobfleet.get(job, conn=conn), node


def test_an_async_start_hook_runs_on_the_loop_the_async_handlers_run_on(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    job, _ = one_job_on_a_burst_node(conn, fleet, tmp_path, "same_loop")
    assert job["result"] is True


def test_a_handler_blocking_the_loop_is_warned_about_and_not_taken_for_a_hang(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # Blocked for longer than a silent worker is given (2 s here): its heartbeat is a thread
    # of its own, so the worker is not killed as hung; the log says what blocks the loop.
    job, node = one_job_on_a_burst_node(conn, fleet, tmp_path, "hog", {"seconds": 3.0})
    assert job["state"] == "succeeded"
    assert "blocks the worker's event loop" in node.log()
    assert f"jobs=[{job['id']}]" in node.log() or f'"jobs": [{job["id"]}]' in node.log()


def test_a_blocked_loop_is_warned_about_when_beats_are_further_apart_than_the_warning(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # Beats every 2.5 s: a 2 s block of the loop may fall between two of them; it is warned
    # about when the loop answers, late.
    env = {
        **handler_module(tmp_path, "many_handlers", HANDLERS),
        "JOBFLEET_HEARTBEAT_SECONDS": "2.5",
    }
    job = jobfleet.enqueue(conn, "hog", {"seconds": 2.0})
    node = fleet("a", "--workers", "1", "--burst", "--handlers", "many_handlers", env=env)
    assert node.wait(60) == 0, node.log_tail()
    assert jobfleet.get(job, conn=conn)["state"] == "succeeded"
    assert "blocks the worker's event loop" in node.log()


def test_a_worker_left_past_max_rss_by_a_job_beside_its_main_thread_is_recycled(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # No job comes after the one that grew it: the heartbeat thread sees the size and wakes
    # the main thread (which otherwise looks only between messages) to leave.
    env = {**handler_module(tmp_path, "many_handlers", HANDLERS), "JOBFLEET_MAX_CHILD_RSS_MB": "80"}
    node = fleet("a", "--workers", "1", "--handlers", "many_handlers", env=env)
    [first] = wait_until(node.children, what="a worker")
    job = jobfleet.enqueue(conn, "grow", {"mb": 100})
    wait_until(lambda: jobfleet.get(job, conn=conn)["state"] == "succeeded", what="the job")
    assert jobfleet.get(job, conn=conn)["result"] == first
    wait_until(lambda: first not in node.children(), what="the worker to be recycled")
    assert "worker died" not in node.log()


def test_a_handler_holding_the_gil_in_c_is_working_not_hung(
    conn: psycopg.Connection[Any], fleet: Any, tmp_path: Any
) -> None:
    # Its heartbeat thread cannot run for 3.5 s, past the 2 s a silent worker is given; its CPU
    # time grows all along, so the supervisor lets it be.
    job, _ = one_job_on_a_burst_node(conn, fleet, tmp_path, "gil_hog", {"seconds": 3.5})
    assert job["state"] == "succeeded", job
    assert job["result"] > 2.0  # the GIL was held longer than silence is allowed
