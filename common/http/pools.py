"""What an API process's two pools share: the blocking one (jobfleet.http.app) and the
asyncio one of POST /jobs (jobfleet.http.enqueue_routes)."""

from __future__ import annotations

from typing import Any

from jobfleet.db import connection_options
from jobfleet.settings import Settings


def pool_arguments(config: Settings, *, max_size: int, wait: float) -> dict[str, Any]:
    """Through a transaction-mode pooler (PgBouncer) as well as direct: no startup options,
    nothing prepared; each use of a connection is one transaction that begins with the
    timeouts. Autocommit, so that BEGIN and the timeouts go in one round trip
    (jobfleet.db.bounded_transaction). Opened by the app's lifespan, so the API comes up
    even while the database is away; `wait`: how long a request waits for a connection."""
    return {
        "kwargs": {**connection_options(config, pooler_safe=True), "autocommit": True},
        "min_size": 1,
        "max_size": max_size,
        "open": False,
        "timeout": wait,
    }
