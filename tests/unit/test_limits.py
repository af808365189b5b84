"""The per-address limit on failed sign-ins (no database, no server, a fake clock)."""

from __future__ import annotations

from jobfleet.http.limits import AddressLimit, client_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_failures_then_one_per_second() -> None:
    clock = Clock()
    limit = AddressLimit(burst=3, per_second=1, clock=clock)
    for _ in range(3):
        assert limit.wait("a") == 0
        limit.failed("a")
    assert limit.wait("a") == 1.0
    assert limit.wait("b") == 0  # per address
    clock.now += 0.25
    assert limit.wait("a") == 0.75
    clock.now += 0.75
    assert limit.wait("a") == 0
    limit.failed("a")
    assert limit.wait("a") == 1.0
    clock.now += 3600
    assert limit.wait("a") == 0  # refilled, never beyond the burst
    for _ in range(3):
        limit.failed("a")
    assert limit.wait("a") > 0


def test_the_table_keeps_only_the_most_recent_addresses() -> None:
    limit = AddressLimit(burst=1, per_second=1, max_addresses=100, clock=Clock())
    for n in range(10_000):
        limit.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limit._buckets) == 100
    assert limit.wait("10.0.39.15") > 0  # the last one is remembered
    assert limit.wait("10.0.0.1") == 0  # the first ones were let go


def test_addresses_are_counted_by_host_and_ipv6_by_its_64() -> None:
    assert client_address(("203.0.113.7", 1)) == "203.0.113.7"
    assert client_address(("2001:db8:1:2:aaaa::1", 1)) == "2001:db8:1:2::/64"
    assert client_address(("2001:db8:1:2:ffff::9", 2)) == "2001:db8:1:2::/64"
    assert client_address(("::ffff:203.0.113.7", 1)) == "203.0.113.7"
    assert client_address(("testclient", 1)) == "testclient"
    assert client_address(None) == "unknown"
