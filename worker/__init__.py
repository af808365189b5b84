"""The child side: handlers, their context, worker lifecycle hooks, and running one job."""

from jobfleet.worker.context import JobContext
from jobfleet.worker.hooks import on_worker_start, on_worker_stop
from jobfleet.worker.registry import HandlerSpec, handler, load_handlers, registered

__all__ = [
    "HandlerSpec",
    "JobContext",
    "handler",
    "load_handlers",
    "on_worker_start",
    "on_worker_stop",
    "registered",
]
