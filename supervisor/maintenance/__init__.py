"""Maintenance services, one module each with a `run_once` a test calls against the database:
heartbeat, lease renewal, leadership, and the leader's lease reaper, pruner and queue gauges.
The control connection (supervisor/control.py) schedules them."""
