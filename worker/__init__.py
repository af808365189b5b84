"""The child side: handlers, their context, and running one job."""

from jobfleet.worker.context import JobContext
from jobfleet.worker.registry import HandlerSpec, handler, load_handlers, registered

__all__ = ["HandlerSpec", "JobContext", "handler", "load_handlers", "registered"]
