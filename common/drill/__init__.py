"""The recovery drill (`jobfleet drill`): local nodes, a mixed workload, real faults (SIGKILL
of workers and whole nodes, SIGSTOP past a lease, or a primary failover), then the
invariants, from the database.

| module | job |
| --- | --- |
| `workload.py` | the seeded mix of job kinds and the terminal state each must reach |
| `handlers.py` | the drill's job types (`drill_*`), loaded by its nodes |
| `nodes.py` | local supervisors, each in its own process group |
| `faults.py` | the fault plan, striking faults, timing recovery |
| `failover_drill.py` | `--failover COMMAND`: the user's failover instead of the node faults |
| `failover.py` | a failover's timeline on the database clock, and whether nodes came back in time |
| `formation.py` | a primary and a synchronous standby on this machine (the failover test's) |
| `invariants.py` | what must hold afterwards |
| `report.py` | the closing tables |
| `run.py` | the loop that ties them together |
"""
