"""Maintenance services: every supervisor runs them, only the elected leader acts on the
shared ones (one module per service, each with a run_once that is testable on its own)."""

from jobfleet.supervisor.maintenance.runner import Maintenance

__all__ = ["Maintenance"]
