"""DBOS as a peer: no-op workflows on a DBOS queue in the scratch database (its system
database, schema `dbos`), enqueued with its client in transactions of 1,000 (its
`enqueue_in_transaction`), and `workers` DBOS processes dequeuing them with no per-process
cap on concurrency and a 0.1 s polling interval (its queues poll; the default is 1 s). DBOS
processes never exit on an empty queue: the run ends when every workflow succeeded, and the
processes are then stopped. Run as a module, it is one DBOS process:
`python -m jobfleet.bench.peer_dbos URL`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from jobfleet.bench.context import Context
from jobfleet.bench.nodes import BenchError
from jobfleet.bench.peers import module_argv, rate, run_until
from jobfleet.bench.scratch import scalar

APP = "jobfleet-bench"
QUEUE = "bench"
WORKFLOW = "noop"
POLLING_SECONDS = 0.1
ENQUEUE_BATCH = 1000
LEFT = "SELECT count(*) FROM dbos.workflow_status WHERE status <> 'SUCCESS'"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy URL DBOS takes for a libpq URL or conninfo string: psycopg 3 as the
    driver, the host (a socket directory too) and the other libpq parameters in the query."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    user, password = params.pop("user", ""), params.pop("password", "")
    port, dbname = params.pop("port", ""), params.pop("dbname", "")
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    where = (f"{auth}@" if auth else "") + (f":{port}" if port else "")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql+psycopg://{where}/{quote(dbname, safe='')}{query}"


def _client(url: str) -> Any:
    from dbos import DBOSClient

    return DBOSClient(system_database_url=url, application_name=APP)


def _prepare(url: str, jobs: int) -> None:
    import sqlalchemy as sa

    url = sqlalchemy_url(url)
    migrated = subprocess.run(
        [*module_argv("dbos.cli.cli", "migrate"), "--sys-db-url", url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if migrated.returncode != 0:
        raise BenchError(f"dbos migrate exited {migrated.returncode}: {migrated.stderr[-600:]}")
    client = _client(url)
    try:
        client.register_queue(QUEUE, polling_interval_sec=POLLING_SECONDS)
        engine = sa.create_engine(url)
        options: Any = {"queue_name": QUEUE, "workflow_name": WORKFLOW}
        for start in range(0, jobs, ENQUEUE_BATCH):
            with engine.begin() as conn:
                for _ in range(min(ENQUEUE_BATCH, jobs - start)):
                    client.enqueue_in_transaction(conn, options)
        engine.dispose()
    finally:
        client.destroy()


def measure(ctx: Context, url: str, jobs: int, workers: int) -> dict[str, Any]:
    _prepare(url, jobs)
    seconds = run_until(module_argv(__name__, url), workers, url, LEFT)
    if scalar(url, LEFT):
        raise BenchError("DBOS's processes stopped with workflows not done")
    return rate(jobs, seconds, polling_interval_sec=POLLING_SECONDS)


def work(url: str) -> None:
    from dbos import DBOS

    DBOS(
        config={
            "name": APP,
            "system_database_url": sqlalchemy_url(url),
            "executor_id": f"bench-{os.getpid()}",
            "log_level": "WARNING",
        }
    )

    # Typed where the [bench] extra is installed, untyped (Any) where it is not.
    @DBOS.workflow(name=WORKFLOW)  # type: ignore[misc, untyped-decorator, unused-ignore]
    def noop() -> None:
        return None

    DBOS.launch()
    threading.Event().wait()  # the bench stops this process once every workflow ran


if __name__ == "__main__":
    work(sys.argv[1])
