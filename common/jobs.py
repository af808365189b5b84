"""The job model as the processing side sees it: a claimed job and an attempt's outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, Literal, NamedTuple

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
    # The enqueuer's W3C trace context (JSON text from the claim, a dict from a blocking
    # claim's jsonb), or None: the worker's attempt span continues that trace.
    trace_context: str | dict[str, str] | None = None


def _fields(*names: str) -> itemgetter[Any]:
    """A getter of ClaimedJob fields by name, working by position (for C loops: map, zip)."""
    return itemgetter(*(ClaimedJob._fields.index(name) for name in names))


JOB_ID = _fields("id")
TYPE = _fields("type")
QUEUE = _fields("queue")
WAITED = _fields("waited")
# What a child gets of a job: (id, attempt, type, payload JSON, timeout, trace context); see
# worker/protocol.
FOR_CHILD = _fields("id", "attempt", "type", "payload", "timeout", "trace_context")


def one_type_queue(jobs: Sequence[ClaimedJob]) -> tuple[str, str] | None:
    """The (type, queue) every one of `jobs` has, or None when they differ (or there are
    none). Two sets of strings in C loops: a Counter of (type, queue) tuples made and hashed
    a tuple per job cost 0.14 ms a thousand jobs, this 0.04, on the supervisor's hot path
    (every claim, every batch of outcomes)."""
    types, queues = set(map(TYPE, jobs)), set(map(QUEUE, jobs))
    if len(types) == 1 and len(queues) == 1:
        return types.pop(), queues.pop()
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | str | None) -> str | None:
    """A time as the JSON shapes carry it (ISO 8601), None as null; one Python cannot hold
    comes as PostgreSQL's text ('infinity', a year past 9999: see jobfleet.tolerant)."""
    return value.isoformat() if isinstance(value, datetime) else value


# A success as it travels in bulk: (job id, attempt, result JSON, pid, started, finished), the
# times as whole microseconds since the epoch (an int prints three times faster than a float).
# Successes are the hot path; a tuple is a fraction of the cost of an object to build, pickle
# and unpickle.
Success = tuple[int, int, str, "int | None", int, int]
# Positions in a Success.
SUCCESS_ID: Final = 0
SUCCESS_STARTED: Final = 4
SUCCESS_FINISHED: Final = 5
SUCCESS_JOB_ID = itemgetter(SUCCESS_ID)


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
