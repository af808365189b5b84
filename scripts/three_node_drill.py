"""Issue 4's acceptance run: three supervisors (a, b, c) on one database with 5 s leases,
a mixed workload, node a's whole process group killed with SIGKILL mid-run; then the
invariants. Empties the database's jobs tables first: point it at a scratch database.

    JOBFLEET_DATABASE_URL=... python scripts/three_node_drill.py

Until `jobfleet drill` lands.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

import jobfleet

URL = os.environ["JOBFLEET_DATABASE_URL"]
JOBFLEET = str(Path(sys.executable).parent / "jobfleet")


def count(conn: psycopg.Connection, query: str, *params: object) -> int:
    row = conn.execute(query, params or None).fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    env = {**os.environ, "JOBFLEET_LEASE_SECONDS": "5"}
    logs = Path(tempfile.mkdtemp(prefix="drill-"))
    rnd = random.Random(7)
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute("TRUNCATE jobs, job_attempt_log, nodes, job_types RESTART IDENTITY CASCADE")
        kinds = {
            "noop": jobfleet.enqueue_many(c, "noop", [None] * 2000),
            "sleep": jobfleet.enqueue_many(
                c, "sleep", [{"seconds": rnd.uniform(0.05, 0.5)} for _ in range(300)]
            ),
            "cpu": jobfleet.enqueue_many(c, "cpu", [{"ms": 20}] * 300),
            "flaky": jobfleet.enqueue_many(
                c, "flaky", [{"fail_times": 2}] * 200, backoff="fixed:0.2"
            ),
            "fail": jobfleet.enqueue_many(
                c, "fail", [{"message": "always"}] * 100, max_attempts=3, backoff="fixed:0.2"
            ),
            "crash": jobfleet.enqueue_many(
                c, "crash", [{"signal": 9}] * 20, max_attempts=2, backoff="fixed:0.2"
            ),
        }
        t0 = time.time()

        def start(name: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [JOBFLEET, "supervisor", "--node-name", name, "--workers", "2"],
                env=env,
                start_new_session=True,
                stdout=open(logs / f"{name}.log", "w"),
                stderr=subprocess.STDOUT,
            )

        # a starts first so that it holds work when it dies; b and c join a moment later.
        procs = {"a": start("a")}
        held_by_a = "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE 'a/%'"
        while count(c, held_by_a) < 2:
            time.sleep(0.05)
        procs.update(b=start("b"), c=start("c"))
        time.sleep(1.0)  # let b and c start while a works: the kill lands mid-run
        held = count(c, held_by_a)
        os.killpg(procs["a"].pid, signal.SIGKILL)
        print(f"killed node a's process group at {time.time() - t0:.1f} s; it held {held} jobs")
        if held == 0:
            print("node a held nothing when it died: nothing was tested")
            return 1
        while count(c, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"):
            time.sleep(0.2)
            if time.time() - t0 > 600:
                print("not finished after 600 s")
                return 1
        print(f"every job terminal after {time.time() - t0:.1f} s")
        for name in "bc":
            procs[name].send_signal(signal.SIGTERM)
        codes = [procs[name].wait(60) for name in "bc"]
        print("exit codes of b and c:", codes)
        states = dict(c.execute("SELECT id, state FROM jobs").fetchall())
        ok = codes == [0, 0]
        for kind, ids in kinds.items():
            want = "dead" if kind in ("fail", "crash") else "succeeded"
            wrong = [i for i in ids if states[i] != want]
            print(
                f"{kind:6} {len(ids):5} jobs: "
                + (f"all {want}" if not wrong else f"{len(wrong)} NOT {want}")
            )
            ok &= not wrong
        doubles = count(
            c,
            "SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE outcome"
            " = 'succeeded' GROUP BY job_id HAVING count(*) > 1) d",
        )
        lost = count(c, "SELECT count(*) FROM job_attempts WHERE outcome = 'lost' AND node = 'a'")
        crashed = count(
            c, "SELECT count(*) FROM job_attempts WHERE error LIKE %s", "%killed by signal 9%"
        )
        print(
            f"double successes: {doubles}; attempts of node a recorded lost: {lost}; "
            f"attempts recorded 'killed by signal 9': {crashed}; logs in {logs}"
        )
        ok &= doubles == 0
        print("INVARIANTS HOLD" if ok else "INVARIANTS BROKEN")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
