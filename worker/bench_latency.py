"""The `latency` bench scenario's job types. Only the latency node loads this module, so its
claims are for these two types alone, as Graphile Worker's own latency test registers one task.

`bench_probe` says when its first line ran: it sends the job's sample number and the time
(this host's clock, which the bench reads too) in one UDP datagram to the port the payload
names, so the bench learns the moment a job starts without asking the database.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from jobfleet.worker.registry import handler

PROBE_TYPE = "bench_probe"
NOOP_TYPE = "bench_noop"

_sock: socket.socket | None = None  # one per worker process, made after the fork


@handler(PROBE_TYPE)
def probe(payload: Any) -> None:
    started = time.time()
    global _sock
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{payload['sample']} {started:.6f}".encode(), ("127.0.0.1", payload["port"]))


@handler(NOOP_TYPE)
def noop(payload: Any) -> None:
    return None
