"""The job model as the processing side sees it: a claimed job and an attempt's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Literal, NamedTuple

Outcome = Literal["succeeded", "failed", "crashed", "timed_out", "lost", "cancelled"]
TERMINAL_STATES = ("succeeded", "cancelled", "dead")


class ClaimedJob(NamedTuple):
    """A job as a claim returns it (the claim's columns, in order). A tuple: the supervisor
    makes hundreds of thousands a second, and a frozen dataclass costs several times more."""

    id: int
    type: str
    queue: str
    priority: int
    attempt: int
    timeout: float | None
    payload: Any
    waited: float = 0.0  # seconds between becoming ready (run_at) and this claim


# Fields of a ClaimedJob by position, for the supervisor's per-batch C loops (map, zip).
JOB_ID = itemgetter(0)
TYPE_QUEUE = itemgetter(1, 2)
WAITED = itemgetter(7)
# What a child gets of a job: (id, attempt, type, payload JSON, timeout); see worker/protocol.
FOR_CHILD = itemgetter(0, 4, 1, 6, 5)
SUCCESS_JOB_ID = itemgetter(0)  # of a Success tuple (below)


def utcnow() -> datetime:
    return datetime.now(UTC)


# A success as it travels in bulk: (job id, attempt, result JSON, pid, started, finished), the
# times as whole microseconds since the epoch (an int prints three times faster than a float).
# Successes are the hot path; a tuple is a fraction of the cost of an object to build, pickle
# and unpickle.
Success = tuple[int, int, str, "int | None", int, int]


@dataclass(slots=True)
class AttemptResult:
    """How one attempt ended, as recorded by the node that ran it."""

    job_id: int
    attempt: int
    outcome: Outcome
    result_json: str = "null"  # the handler's return value, JSON text (succeeded only)
    error: str | None = None
    final: bool = False  # no retry whatever attempts remain (e.g. the handler is unknown)
    backoff: str | None = None  # the type's default strategy, when the job has none
    backoff_seconds: float | None = None
    pid: int | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime = field(default_factory=utcnow)

    def as_success(self) -> Success:
        return (
            self.job_id,
            self.attempt,
            self.result_json,
            self.pid,
            round(self.started_at.timestamp() * 1e6),
            round(self.finished_at.timestamp() * 1e6),
        )
