"""A light HTTP load: `clients` keep-alive connections on one asyncio loop, each sending
`POST /jobs` and waiting for the answer before the next, as that many callers would. Raw
HTTP/1.1 over asyncio streams, so the load itself costs little of the CPUs it shares with the
server it measures."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jobfleet.bench.nodes import BenchError


def post_jobs(port: int, key: str, clients: int, per_client: int) -> dict[str, Any]:
    """`clients` x `per_client` single-job POSTs; their rate over the whole run."""
    body = json.dumps({"type": "noop", "payload": None}).encode()
    request = (
        f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    seconds, busy = asyncio.run(_load(port, request, clients, per_client))
    jobs = clients * per_client - busy
    return {
        "clients": clients,
        "jobs": jobs,
        "busy": busy,  # answered 503: every pooled connection was taken for too long
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
    }


async def _load(port: int, request: bytes, clients: int, per_client: int) -> tuple[float, int]:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    try:
        started = time.perf_counter()
        busy = await asyncio.gather(*(_client(r, w, request, per_client) for r, w in streams))
        return time.perf_counter() - started, sum(busy)
    finally:
        for _, writer in streams:
            writer.close()


async def _client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, count: int
) -> int:
    """Send `count` requests one after the other; return how many were answered 503."""
    busy = 0
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        answer = await reader.readexactly(length)
        if status == b"503":
            busy += 1
        elif status != b"201":
            raise BenchError(f"POST /jobs: HTTP {status.decode()}: {answer[:300]!r}")
    return busy
