"""Limits on what a request may cost: bodies over the size limit are refused (413) before
they are read into memory; clients that keep failing to sign in are refused (429) before
their key is looked up."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobfleet.http.errors import error_response


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a declared Content-Length over the limit is refused at once; a body sent
    without one (chunked) is counted as it arrives and refused when it crosses the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(scope, receive, send)
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Any, send: Send) -> None:
        response = error_response(
            413,
            "too_large",
            f"the request body is over the limit of {self.limit} bytes; send fewer or smaller "
            "jobs per request (JOBFLEET_MAX_REQUEST_BYTES sets the limit)",
        )
        await response(scope, receive, send)


class AddressLimit:
    """Requests that fail to sign in (401), limited per client address, in memory.

    Each 401 costs its address a token from a small bucket; while an address has none left,
    its requests are answered 429 before any database work (a key lookup, or even taking a
    pooled connection). API keys hold 256 random bits, so this is not about guessing them:
    it keeps anonymous traffic from costing the database a query per request. An IPv6
    client counts by its /64 (one host usually holds the whole network), and the table keeps
    the `max_addresses` most recently seen, so it stays small whatever the traffic. Each
    process keeps its own.
    """

    def __init__(
        self,
        *,
        burst: float = 20.0,
        per_second: float = 1.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.per_second, self.max_addresses = burst, per_second, max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def wait(self, address: str) -> float:
        """Seconds until `address` may try to sign in again (0: now)."""
        with self._lock:
            tokens = self._tokens(address)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def failed(self, address: str) -> None:
        """`address` failed to sign in: it costs a token."""
        with self._lock:
            self._buckets[address] = (max(0.0, self._tokens(address) - 1), self.clock())
            self._buckets.move_to_end(address)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)

    def _tokens(self, address: str) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return self.burst
        tokens, when = entry
        return min(self.burst, tokens + (self.clock() - when) * self.per_second)


def client_address(client: tuple[str, int] | None) -> str:
    """What AddressLimit counts by: the IP address, an IPv6 one by its /64."""
    host = client[0] if client else "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
