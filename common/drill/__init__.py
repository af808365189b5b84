"""The recovery drill (`jobfleet drill`): local nodes, a mixed workload, real faults (SIGKILL
of workers and whole nodes, SIGSTOP past a lease), then the invariants, from the database.

| module | job |
| --- | --- |
| `workload.py` | the seeded mix of job kinds and the terminal state each must reach |
| `handlers.py` | the drill's job types (`drill_*`), loaded by its nodes |
| `nodes.py` | local supervisors, each in its own process group |
| `faults.py` | the fault plan, striking faults, timing recovery |
| `invariants.py` | what must hold afterwards |
| `report.py` | the closing tables |
| `run.py` | the loop that ties them together |
"""
