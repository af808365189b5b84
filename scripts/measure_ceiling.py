"""Raw ceiling: the claim + complete SQL alone, in batches of 500, from two processes.

    JOBFLEET_DATABASE_URL=... python scripts/measure_ceiling.py [N] [bare|contract ...]

`bare` completes with a minimal fenced UPDATE (in the same planner-proof shape as ours);
`contract` records outcomes with jobfleet's own statements (common/store.py). Also prints
enqueue_many (COPY) throughput. It empties the database's jobs tables first: point it at a
scratch database. Until `jobfleet bench` lands.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from typing import Any

import psycopg

from jobfleet.enqueue import enqueue_many
from jobfleet.jobs import AttemptResult
from jobfleet.store import claim, record

URL = os.environ["JOBFLEET_DATABASE_URL"]
BARE_COMPLETE = """
UPDATE jobs j SET state = 'succeeded', finished_at = now(), locked_by = NULL,
       lease_expires_at = NULL
FROM (SELECT u.*, 'running'::text AS must_be
      FROM unnest(%(ids)s::bigint[], %(att)s::int[]) u(id, attempt) OFFSET 0) d
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.id = d.id AND j.attempt = d.attempt
  AND j.state = d.must_be
"""


def reset() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, job_attempt_log RESTART IDENTITY CASCADE")
        conn.execute("VACUUM ANALYZE jobs")


def fill(n: int) -> float:
    with psycopg.connect(URL) as conn:
        started = time.perf_counter()
        enqueue_many(conn, "noop", [None] * n)
        conn.commit()
        return time.perf_counter() - started


def drain(mode: str, out: Any) -> None:
    done = 0
    with psycopg.connect(URL, autocommit=True) as conn:
        while jobs := claim(
            conn, holder="bench/1", types=["noop"], queues=None, limit=500, lease_seconds=30
        ):
            if mode == "bare":
                conn.execute(
                    BARE_COMPLETE,
                    {"ids": [j.id for j in jobs], "att": [j.attempt for j in jobs]},
                    prepare=False,
                )
            else:
                record(conn, "bench", [AttemptResult(j.id, j.attempt, "succeeded") for j in jobs])
            done += len(jobs)
    out.put(done)


def run(mode: str, n: int) -> None:
    reset()
    fill(n)
    out: Any = mp.Queue()
    procs = [mp.Process(target=drain, args=(mode, out)) for _ in range(2)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    total = sum(out.get() for _ in procs)
    print(f"{mode}: {total} jobs in {elapsed:.2f}s = {total / elapsed:,.0f} jobs/s", flush=True)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    reset()
    print(f"enqueue_many COPY: {count / fill(count):,.0f} jobs/s")
    for mode in sys.argv[2:] or ("bare", "contract"):
        run(mode, count)
