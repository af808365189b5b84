"""The shop's background jobs, run by `jobfleet supervisor --handlers shop.jobs`."""

from __future__ import annotations

import os
from typing import Any

from jobfleet.worker import handler, on_worker_start, on_worker_stop

# A per-process resource, as a mail client or a connection pool would be: made in each worker
# after the fork, never at import (the supervisor imports this module before it forks).
mailer: dict[str, Any] | None = None


@on_worker_start
def open_mailer() -> None:
    global mailer
    mailer = {"opened_by": os.getpid()}


@on_worker_stop
def close_mailer() -> None:
    global mailer
    mailer = None


@handler("send_receipt", max_attempts=3, timeout=30)
def send_receipt(payload: dict[str, Any]) -> dict[str, Any]:
    assert mailer is not None, "the worker's start hook opens the mailer"
    return {"order": payload["order"], "mailer_of": mailer["opened_by"], "pid": os.getpid()}
