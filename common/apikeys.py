"""API keys for the HTTP API: create, list, revoke, verify, and the cluster-wide rate limit.

A key reads `jf_<key_id>_<secret>`. The database keeps the key id, a random salt and
SHA-256(salt + secret): a stolen table does not give working keys. Verification compares
digests in constant time. The rate limit is a token bucket on the key's row (see
sql/queries/api_keys.sql, take_api_token), so every node draws from the same bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from jobfleet.errors import JobfleetError
from jobfleet.jobs import iso
from jobfleet.options import check_name
from jobfleet.queries import sql

SCOPES = ("enqueue", "read", "cancel", "admin")
PREFIX = "jf"
# The burst a rate allows: a second's worth, at least one request, so `--rate 20/s` lets 20
# back-to-back requests through, as a user reads it (a tenth of a second's refused the third).
# Over any window of T seconds a client sees at most rate x T + one second's worth.
BURST_SECONDS = 1.0
# A key's rate: more than a million requests a second is no limit at all (leave it out).
RATE_MAX = 1_000_000.0
_KEY = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{20,128}})$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class UnknownApiKey(JobfleetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no API key named {name!r} (see `jobfleet apikey list`)")


@dataclass(frozen=True)
class ApiKey:
    """A verified key, as a request sees it."""

    name: str
    scopes: frozenset[str]
    rate_per_second: float | None


@dataclass(frozen=True)
class TokenTaken:
    allowed: bool
    wait_seconds: float  # until the next token, when not allowed


def parse_scopes(text: str) -> list[str]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    if not scopes:
        raise ValueError(f"--scopes is empty: give one or more of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(
            f"--scopes: unknown scope {unknown[0]!r}; use a comma-separated list of "
            f"{', '.join(SCOPES)}"
        )
    return sorted(set(scopes), key=SCOPES.index)


def parse_rate(text: str) -> float:
    """'100/s', '30/min', '1000/h' -> requests per second."""
    match = _RATE.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"--rate {text!r} is not a rate: write requests per time, such as 100/s, 30/min "
            "or 1000/h (more than 0)"
        )
    rate = float(match.group(1)) / _PER[match.group(2)]
    if rate > RATE_MAX:  # the bucket's arithmetic in double precision overflows far above
        raise ValueError(f"--rate {text!r} is over {RATE_MAX:.0f}/s: leave --rate out for no limit")
    return rate


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def create_key(conn: Any, name: str, scopes: list[str], rate_per_second: float | None) -> str:
    """Store a new key and return it: the only time it exists in the clear."""
    check_name("--name", name)
    key_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_bytes(16)
    burst = None if rate_per_second is None else max(1.0, rate_per_second * BURST_SECONDS)
    row = conn.execute(
        sql("create_api_key"),
        {
            "name": name,
            "key_id": key_id,
            "salt": salt,
            "secret_hash": _digest(salt, secret),
            "scopes": scopes,
            "rate": rate_per_second,
            "burst": burst,
        },
    ).fetchone()
    if row is None:
        raise JobfleetError(
            f"an API key named {name!r} exists already; revoke it or choose another name"
        )
    return f"{PREFIX}_{key_id}_{secret}"


def list_keys(conn: Any) -> list[dict[str, Any]]:
    keys = []
    for name, key_id, scopes, rate, created_at, revoked_at in conn.execute(sql("list_api_keys")):
        keys.append(
            {
                "name": name,
                "key_id": key_id,
                "scopes": list(scopes),
                "rate_per_second": rate,
                "created_at": iso(created_at),
                "revoked_at": iso(revoked_at),
            }
        )
    return keys


def revoke_key(conn: Any, name: str) -> None:
    try:
        check_name("--name", name)
    except ValueError:  # no key can have it (names are checked at create), nor can a query
        raise UnknownApiKey(name) from None
    if conn.execute(sql("revoke_api_key"), {"name": name}).fetchone() is None:
        for key in list_keys(conn):
            if key["name"] == name:
                raise JobfleetError(f"API key {name!r} was revoked already")
        raise UnknownApiKey(name)


def well_formed(presented: str) -> bool:
    """Whether `presented` has a key's shape (no database needed to say no)."""
    return _KEY.fullmatch(presented) is not None


def verify_key(conn: Any, presented: str) -> ApiKey | None:
    """The key's name and scopes, or None for a malformed, unknown, revoked or wrong key."""
    match = _KEY.match(presented)
    if match is None:
        return None
    row = conn.execute(sql("api_key_by_id"), {"key_id": match.group(1)}).fetchone()
    return _opened(row, match)


async def verify_keys_async(conn: Any, presented: list[str]) -> list[ApiKey | None]:
    """`verify_key` for many presented keys (concurrent requests') in one query, on an
    asyncio connection: one answer per key, in order."""
    matches = [_KEY.match(one) for one in presented]
    key_ids = sorted({m.group(1) for m in matches if m is not None})
    cur = await conn.execute(sql("api_keys_by_ids"), {"key_ids": key_ids})
    rows = {row[0]: row[1:] for row in await cur.fetchall()}
    return [None if m is None else _opened(rows.get(m.group(1)), m) for m in matches]


def _opened(row: Any, match: re.Match[str]) -> ApiKey | None:
    """The key a presented one (`match`: its id and secret) opens, from its `api_key_by_id`
    row (None: no such key id): None unless its secret matches and the key is not revoked."""
    if row is None:
        # Spend the same work as a real check, so timing does not tell which key ids exist.
        hmac.compare_digest(_digest(b"0" * 16, match.group(2)), bytes(32))
        return None
    name, salt, stored, scopes, rate, revoked = row
    if not hmac.compare_digest(_digest(bytes(salt), match.group(2)), bytes(stored)) or revoked:
        return None
    return ApiKey(name=name, scopes=frozenset(scopes), rate_per_second=rate)


def take_token(conn: Any, key: ApiKey) -> TokenTaken:
    """One request's worth from the key's bucket (always allowed for a key without a rate)."""
    if key.rate_per_second is None:
        return TokenTaken(True, 0.0)
    row = conn.execute(sql("take_api_token"), {"name": key.name}).fetchone()
    return _taken(row)


async def take_token_async(conn: Any, key: ApiKey) -> TokenTaken:
    """`take_token` on an asyncio connection."""
    if key.rate_per_second is None:
        return TokenTaken(True, 0.0)
    row = await (await conn.execute(sql("take_api_token"), {"name": key.name})).fetchone()
    return _taken(row)


def _taken(row: Any) -> TokenTaken:
    if row is None:  # deleted between verify and now
        return TokenTaken(False, 1.0)
    return TokenTaken(bool(row[0]), float(row[1]))


def format_rate(rate_per_second: float | None) -> str:
    if rate_per_second is None:
        return "unlimited"
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600)):
        if rate_per_second * seconds >= 1 or unit == "h":
            return f"{rate_per_second * seconds:.6g}/{unit}"
    raise AssertionError("unreachable")
