"""Looking at and steering jobs: show, list, status, cancel, the dead-letter queue."""

from __future__ import annotations

from typing import Any

from jobfleet.errors import JobfleetError, JobNotFound
from jobfleet.jobs import iso
from jobfleet.options import STATES, check_name, check_state
from jobfleet.queries import sql
from jobfleet.settings import settings

LIST_LIMIT_MAX = 10_000


def show_job(conn: Any, job_id: int, *, attempts: bool = True) -> dict[str, Any]:
    """The job and its attempts, in the contract's `jobs show --json` shape (`attempts=False`:
    a job known to have none, such as one just enqueued, skips their query)."""
    cur = conn.execute(sql("job_by_id"), {"id": job_id})
    row = cur.fetchone()
    if row is None:
        raise JobNotFound(job_id)
    names = [c.name for c in cur.description]
    history: list[dict[str, Any]] = []
    if attempts:
        found = conn.execute(sql("attempts_of_job"), {"id": job_id})
        history = attempt_shapes([c.name for c in found.description], found.fetchall())
    return job_shape(names, row, history)


def job_shape(names: list[str], row: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A `job_by_id` row and its attempts as `jobs show --json` shows them."""
    job = dict(zip(names, row, strict=True))
    return {
        "id": job["id"],
        "type": job["type"],
        "queue": job["queue"],
        "state": job["state"],
        "priority": job["priority"],
        "attempt": job["attempt"],
        "max_attempts": job["max_attempts"],
        "run_at": iso(job["run_at"]),
        "created_at": iso(job["created_at"]),
        "started_at": iso(job["started_at"]),
        "finished_at": iso(job["finished_at"]),
        "timeout": job["timeout_seconds"],
        "backoff": job["backoff"],
        "idempotency_key": job["idempotency_key"],
        "cancel_requested": job["cancel_requested"],
        # The node as `status` names it (holding the job, else the one it succeeded on); the
        # run of it holding the lease (a restart is a new one) apart.
        "node": (job["locked_by"] or "").partition("/")[0] or job["attempt_node"],
        "run": (job["locked_by"] or "").partition("/")[2] or None,
        "lease_expires_at": iso(job["lease_expires_at"]),
        "payload": job["payload"],
        "result": job["result"],
        "error": job["error"],
        "progress": job["progress"],
        "attempts": history,
    }


def attempt_shapes(names: list[str], rows: list[Any]) -> list[dict[str, Any]]:
    """`attempts_of_job` rows as `jobs show --json` shows them."""
    shaped = [dict(zip(names, r, strict=True)) for r in rows]
    for attempt in shaped:
        attempt["started_at"] = iso(attempt["started_at"])
        attempt["finished_at"] = iso(attempt["finished_at"])
    return shaped


def list_jobs(
    conn: Any,
    *,
    state: str | None = None,
    type: str | None = None,
    queue: str | None = None,
    node: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `before` (an id) pages backwards; `node`: held or run by that node."""
    if state is not None:
        check_state(state)
    if type is not None:
        check_name("type", type)
    if queue is not None:
        check_name("queue", queue)
    if node is not None:
        check_name("node", node)
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit {limit} is out of range: use 1 to {LIST_LIMIT_MAX}")
    cur = conn.execute(
        sql("list_jobs"),
        {
            "state": state,
            "type": type,
            "queue": queue,
            "node": node,
            "limit": limit,
            "before": before,
        },
    )
    names = [c.name for c in cur.description]
    jobs = []
    for row in cur.fetchall():
        job = dict(zip(names, row, strict=True))
        for key in ("run_at", "created_at", "finished_at"):
            job[key] = iso(job[key])
        jobs.append(job)
    return jobs


def status(conn: Any) -> dict[str, Any]:
    """Counts by state, live nodes, and types with work no live node can run."""
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute(sql("state_counts")):
        counts[state] = n
    stale_after = 3 * settings().node_heartbeat
    cur = conn.execute(sql("live_nodes"), {"stale_after": stale_after})
    names = [c.name for c in cur.description]
    nodes = []
    for row in cur.fetchall():
        node = dict(zip(names, row, strict=True))
        nodes.append(
            {
                "name": node["name"],
                "hostname": node["hostname"],
                "pid": node["pid"],
                "workers": node["workers"],
                "busy": node["busy"],
                "running": node["running"],
                "queues": node["queues"],
                "types": node["types"],
                "started_at": iso(node["started_at"]),
                "last_heartbeat": iso(node["last_heartbeat"]),
            }
        )
    unhandled = [r[0] for r in conn.execute(sql("unhandled_types"), {"stale_after": stale_after})]
    return {
        "counts": counts,
        "nodes": nodes,
        "unhandled_types": unhandled,
        "paused_queues": paused_queues(conn),
    }


def paused_queues(conn: Any) -> list[str]:
    return [name for (name,) in conn.execute(sql("paused_queues"))]


def queues(conn: Any) -> list[dict[str, Any]]:
    """Every queue with jobs or paused: its counts by state (all states, zeros included) and
    whether it is paused."""
    counts: dict[str, dict[str, int]] = {}
    for queue, state, n in conn.execute(sql("queue_counts")):
        counts.setdefault(queue, dict.fromkeys(STATES, 0))[state] = n
    paused = set(paused_queues(conn))
    return [
        {"queue": q, "counts": counts.get(q, dict.fromkeys(STATES, 0)), "paused": q in paused}
        for q in sorted(counts.keys() | paused)
    ]


def cron_list(conn: Any) -> list[dict[str, Any]]:
    """The periodic jobs: schedule, last and next tick, the last job, and whether a live node
    still declares the schedule."""
    cur = conn.execute(sql("cron_list"), {"stale_after": 3 * settings().node_heartbeat})
    return [
        {
            "type": type,
            "schedule": schedule,
            "last_run": iso(last_run),
            "next_run": iso(next_run),
            "last_job": last_job,
            "active": active,
        }
        for type, schedule, last_run, next_run, last_job, active in cur
    ]


def set_paused(conn: Any, queue: str, paused: bool) -> bool:
    """Pause or resume `queue` (a valid queue name) for every node; return whether it is
    paused now. Pausing a queue that has no jobs yet is allowed: none will start."""
    row = conn.execute(
        sql("set_queue_paused"), {"name": check_name("queue", queue), "paused": paused}
    ).fetchone()
    return bool(row[0])


def cancel(conn: Any, job_id: int) -> str:
    """Cancel a queued job, or ask the node running it to stop; return the job's state now.

    A running job ends `cancelled` when its node stops it (or, at the latest, instead of its
    next retry). A finished job cannot be cancelled: JobfleetError says its state.
    """
    row = conn.execute(sql("cancel_job"), {"ids": [job_id]}).fetchone()
    if row is not None:
        return str(row[0])
    raise cancel_refused(job_id, conn.execute(sql("job_state"), {"id": job_id}).fetchone())


def cancel_refused(job_id: int, current: Any) -> JobfleetError:
    """Why a cancel changed nothing, from the job's `job_state` row (None: no such job)."""
    if current is None:
        return JobNotFound(job_id)
    return JobfleetError(
        f"job {job_id} {_finished_as(current[0])}; only queued or running jobs can be cancelled"
    )


def retry_refused(job_id: int, current: Any) -> JobfleetError:
    """Why a retry changed nothing, from the job's `job_state` row (None: no such job)."""
    if current is None:
        return JobNotFound(job_id)
    return JobfleetError(
        f"job {job_id} is {current[0]}; only dead or cancelled jobs can be retried"
    )


def dlq_list(conn: Any, limit: int = 100) -> list[dict[str, Any]]:
    cur = conn.execute(sql("dlq_list"), {"limit": limit})
    names = [c.name for c in cur.description]
    jobs = []
    for row in cur.fetchall():
        job = dict(zip(names, row, strict=True))
        job["created_at"], job["finished_at"] = iso(job["created_at"]), iso(job["finished_at"])
        jobs.append(job)
    return jobs


# What can be queued again: from the dead-letter queue, dead jobs; one job by id (`retry`),
# a dead or a cancelled one.
DLQ_STATES = ["dead"]
RETRYABLE_STATES = ["dead", "cancelled"]


def requeue_params(job_id: int | None, states: list[str]) -> dict[str, Any]:
    """The `requeue_jobs` statement's parameters: one job, or all (job_id None)."""
    return {"states": states, "all": job_id is None, "ids": [] if job_id is None else [job_id]}


def dlq_retry(conn: Any, job_id: int | None) -> list[int]:
    """Queue dead jobs again (one, or all when job_id is None) with a fresh attempt budget."""
    ids = [r[0] for r in conn.execute(sql("requeue_jobs"), requeue_params(job_id, DLQ_STATES))]
    if job_id is not None and not ids:
        current = conn.execute(sql("job_state"), {"id": job_id}).fetchone()
        if current is None:
            raise JobNotFound(job_id)
        raise JobfleetError(
            f"job {job_id} is {current[0]}, not dead; only dead jobs can be "
            "retried from the dead-letter queue"
        )
    return ids


def dlq_purge(conn: Any, older_than_seconds: float | None) -> int:
    return len(conn.execute(sql("dlq_purge"), {"older_than": older_than_seconds}).fetchall())


def _finished_as(state: str) -> str:
    return "already succeeded" if state == "succeeded" else f"is already {state}"
