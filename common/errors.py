"""Exceptions users see. Each carries a message that says what was wrong and how to fix it."""

from __future__ import annotations

from typing import Any


class JobfleetError(Exception):
    """Base of jobfleet's own errors."""


class ConfigError(JobfleetError):
    """A setting has a value jobfleet cannot use."""


class DatabaseUnavailable(JobfleetError):
    """PostgreSQL could not be reached or started."""


class SchemaOutOfDate(JobfleetError):
    """The database's schema is older than this jobfleet needs."""


class JobNotFound(JobfleetError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class JobFailed(JobfleetError):
    """Raised by `jobfleet.wait` for a job that ended without succeeding."""

    def __init__(self, job_id: int, state: str, error: str | None) -> None:
        detail = f": {error.strip().splitlines()[-1]}" if error else ""
        super().__init__(f"job {job_id} ended {state}{detail}")
        self.job_id = job_id
        self.state = state
        self.error = error


def describe(value: Any) -> str:
    """A short, printable form of a user-supplied value for error messages."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python converts to text (4300)
        return f"(an integer of about {int(value.bit_length() * 0.30103)} digits)"
    return text if len(text) <= 80 else text[:77] + "..."
