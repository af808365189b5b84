"""The HTTP API's request and response bodies: what the OpenAPI document publishes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobfleet.options import (
    DELAY_MAX_SECONDS,
    IDEMPOTENCY_KEY_MAX,
    MAX_ATTEMPTS_LIMIT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_MAX_SECONDS,
)

State = Literal["queued", "running", "succeeded", "cancelled", "dead"]
Outcome = Literal["succeeded", "failed", "crashed", "timed_out", "lost", "cancelled"]
BATCH_MAX = 1000


class NewJob(BaseModel):
    """A job to enqueue. Options left out take the type's defaults, then the system's."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=128, examples=["echo"])
    payload: Any = Field(default=None, examples=[{"hello": "world"}])
    queue: str | None = Field(default=None, min_length=1, max_length=128)
    # Strict: a JSON true or "5" is a mistake to report, not a number to guess.
    priority: int | None = Field(
        default=None, strict=True, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="higher runs first"
    )
    delay: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=DELAY_MAX_SECONDS,
        description="seconds from now (at most 100 years)",
    )
    run_at: str | None = Field(
        default=None, description="ISO 8601, in the years 2 to 9998 (UTC); instead of delay"
    )
    max_attempts: int | None = Field(default=None, strict=True, ge=1, le=MAX_ATTEMPTS_LIMIT)
    timeout: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=TIMEOUT_MAX_SECONDS,
        description="seconds per attempt (at most a year)",
    )
    backoff: str | None = Field(
        default=None,
        description="exponential | linear | fixed, optionally ':SECONDS' (at most 7 days)",
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=IDEMPOTENCY_KEY_MAX)
    unique_for: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=DELAY_MAX_SECONDS,
        description="seconds: a job of the same type and payload enqueued within them returns "
        "the first one (200), whatever its state",
    )

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"type", "payload"}, exclude_none=True)


class NewJobs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[NewJob] = Field(min_length=1, max_length=BATCH_MAX)


class Progress(BaseModel):
    fraction: float
    message: str | None = None


class Attempt(BaseModel):
    attempt: int
    outcome: Outcome
    node: str | None
    pid: int | None
    started_at: str | None
    finished_at: str | None
    error: str | None


class JobSummary(BaseModel):
    """A job in a list."""

    id: int
    type: str
    queue: str
    state: State
    priority: int
    attempt: int
    max_attempts: int
    run_at: str | None
    created_at: str | None
    finished_at: str | None
    error: str | None
    node: str | None = Field(
        description="the node holding the job while it runs, else the one it succeeded on"
    )


class Job(JobSummary):
    """A job as `jobfleet jobs show --json` prints it: the summary, and the rest."""

    started_at: str | None
    timeout: float | None
    backoff: str | None
    idempotency_key: str | None
    cancel_requested: bool
    run: str | None = Field(description="which run of the node holds the job's lease")
    lease_expires_at: str | None
    payload: Any
    result: Any
    progress: Progress | None
    attempts: list[Attempt]


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_after: int | None = Field(
        description="pass as `after` for the next page; null on the last page"
    )


class CreatedJobs(BaseModel):
    ids: list[int] = Field(description="the jobs' ids, in request order")
    created: list[bool] = Field(description="false where an idempotency key was already used")


class CancelResult(BaseModel):
    id: int
    state: State = Field(
        description="cancelled (a queued job, at once) or running (its node stops it)"
    )


class JobFilter(BaseModel):
    """Which queued jobs to cancel: of a type, in a queue, or both (one at least)."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, min_length=1, max_length=128, examples=["resize"])
    queue: str | None = Field(default=None, min_length=1, max_length=128)


class DeadFilter(BaseModel):
    """Which dead jobs to queue again: those of a type."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=128, examples=["resize"])


class Changed(BaseModel):
    changed: int = Field(description="how many jobs the request changed")


class QueueCounts(BaseModel):
    queue: str
    counts: dict[str, int]
    paused: bool = Field(description="No node claims from it; its running jobs finish")


class QueueState(BaseModel):
    queue: str
    paused: bool


class Queues(BaseModel):
    queues: list[QueueCounts]


class DeclaredLimits(BaseModel):
    max_running: int | None
    rate: str | None
    limit_key: str | None


class JobType(BaseModel):
    type: str
    queue: str | None = Field(description="the type's default queue (from its handler)")
    priority: int | None
    max_attempts: int | None
    timeout: float | None
    backoff: str | None
    backoff_seconds: float | None
    max_running: int | None = Field(description="jobs of the type running at once, at most")
    rate: str | None = Field(description="starts per period at most: N/s, N/m or N/h")
    limit_key: str | None = Field(
        description="the payload field whose values max_running and rate hold for (per key, "
        "claimed in turns); null: they hold for the whole type"
    )
    declared: DeclaredLimits = Field(description="the limits the handler's decorator declares")
    set_at_run_time: list[str] = Field(
        description="limits set with `jobfleet types set`, in force over the declared ones"
    )
    running: int = Field(description="jobs of the type running now")
    rate_used: int | None = Field(description="starts in the rate's current window")


class JobTypes(BaseModel):
    types: list[JobType]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    schema_version: int


class FieldError(BaseModel):
    field: str = Field(description="where in the request: body.priority, query.limit, ...")
    message: str


class Error(BaseModel):
    """Every error response has this body."""

    error: str = Field(description="a stable code: unauthorized, forbidden, not_found, ...")
    message: str = Field(description="what was wrong and how to fix it")
    field: str | None = Field(default=None, description="the field at fault (422)")
    errors: list[FieldError] | None = Field(default=None, description="every field at fault")
    retry_after: float | None = Field(default=None, description="seconds (429 and 503)")
