"""`jobfleet bench`: how fast the fleet is, measured against the raw SQL and against peers.

Every scenario runs real `jobfleet supervisor` processes against a scratch database of its own
(created on the server in use, dropped afterwards) and returns plain numbers; `report` turns
them into ratios against the targets, a table and JSON, and `docs` into BENCHMARKS.md.
"""

# In the order they run; `peers` is last of the default run since it needs the optional
# [bench] extra.
SCENARIOS = (
    "ceiling",
    "drain",
    "million",
    "cpu",
    "io",
    "transactional",
    "enqueue",
    "latency",
    "backlog",
    "nodes",
    "limits",
    "history",
    "recovery",
    "idle",
    "peers",
    "soak",
)
# Run only when named (`--scenario soak`): twenty minutes by default.
ON_REQUEST = ("soak",)
