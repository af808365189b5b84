"""A new HTTP process's first requests come at once on the server's threads: its metrics
are made once, whichever thread asks first (a second set fails to register)."""

from __future__ import annotations

import subprocess
import sys

FIRST_USE_AT_ONCE = """
import threading
from jobfleet import metrics

barrier = threading.Barrier(16)
failures = []

def first_use():
    barrier.wait()
    try:
        metrics.count_enqueued("echo", "default")
    except Exception as exc:
        failures.append(repr(exc))

threads = [threading.Thread(target=first_use) for _ in range(16)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not failures, failures
print(sum(s.value for m in metrics.metrics().enqueued.collect() for s in m.samples
          if s.name.endswith("_total")))
"""


def test_threads_that_first_count_at_once_share_one_set_of_metrics() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_USE_AT_ONCE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip()) == 16.0  # every thread's count landed in the one set
