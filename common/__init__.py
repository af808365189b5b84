"""jobfleet: a job-processing system on PostgreSQL.

Applications import this package to enqueue jobs inside their own transactions, wait for their
results, look at them, cancel and retry them; handlers are registered with
`jobfleet.worker.handler`.
"""

from jobfleet import aio
from jobfleet.client import cancel, get, retry
from jobfleet.enqueue import enqueue, enqueue_many
from jobfleet.errors import (
    ConfigError,
    DatabaseUnavailable,
    JobFailed,
    JobfleetError,
    JobNotFound,
    SchemaOutOfDate,
)
from jobfleet.wait import wait

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "JobFailed",
    "JobNotFound",
    "JobfleetError",
    "SchemaOutOfDate",
    "aio",
    "cancel",
    "enqueue",
    "enqueue_many",
    "get",
    "retry",
    "wait",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jobfleet")
    except PackageNotFoundError:  # a tree that was never installed
        return "unknown"


__version__ = _version()  # one source: pyproject.toml's, as installed
