"""What the soak reads once a minute: the tables' and indexes' sizes, dead tuples and
autovacuum runs (pg_stat_user_tables), unfinished jobs, enqueue -> start latencies of sampled
jobs, and the supervisor's and workers' resident memory (/proc)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

TABLES = ("jobs", "job_attempt_log")
SIZES = """
SELECT relname, pg_relation_size(relid), pg_indexes_size(relid), n_live_tup, n_dead_tup,
       autovacuum_count, autoanalyze_count
FROM pg_stat_user_tables WHERE relname = ANY(%(tables)s)
"""
UNFINISHED = "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
STARTED = """
SELECT id, extract(epoch FROM started_at - created_at) * 1000 FROM jobs
WHERE id = ANY(%(ids)s) AND started_at IS NOT NULL AND state = 'succeeded'
"""
MIB = 2**20


def tables(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Per table: table and index MiB, live and dead tuples, autovacuum and autoanalyze runs."""
    found: dict[str, Any] = {}
    for name, table, index, live, dead, vacuums, analyses in conn.execute(
        SIZES, {"tables": list(TABLES)}
    ):
        found[name] = {
            "table_mib": table / MIB,
            "index_mib": index / MIB,
            "live_tuples": live,
            "dead_tuples": dead,
            "autovacuums": vacuums,
            "autoanalyses": analyses,
        }
    return found


def unfinished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(UNFINISHED).fetchone()
    return int(row[0]) if row else 0


def started_ms(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, float]:
    """enqueue -> start, ms, of those of `ids` that have succeeded."""
    return {int(i): float(ms) for i, ms in conn.execute(STARTED, {"ids": ids})}


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
