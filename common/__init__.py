"""jobfleet: a job-processing system on PostgreSQL.

Applications import this package to enqueue jobs inside their own transactions and to wait for
results; handlers are registered with `jobfleet.worker.handler`.
"""

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
    "enqueue",
    "enqueue_many",
    "wait",
]
__version__ = "0.1.0"
