"""The console's sign-in sessions: signed tokens, so every HTTP process of every node knows
them with nothing shared but the database.

The browser holds, in an HttpOnly, SameSite=Strict cookie, `<key id>.<expires>.<nonce>.<mac>`:
the API key's public id (never the key), when the session ends, a random nonce, and an
HMAC-SHA256 of the rest keyed with the key's stored hash (`api_keys.secret_hash`, which never
leaves the server). Every request reads the key's row by its id to check the signature, so a
revoked key's sessions stop working at their next request, and a forged or altered token
never passes. The CSRF token of a session is an HMAC of its nonce under the same secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

# A session lasts a working day, then the key must be given again.
SESSION_SECONDS = 12 * 3600
NONCE_BYTES = 16
_TOKEN = re.compile(r"^([0-9a-f]{16})\.(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Claim:
    """A session token's parts, before its signature is checked."""

    key_id: str
    expires: int
    nonce: str
    mac: str

    @property
    def signed(self) -> str:
        return f"{self.key_id}.{self.expires}.{self.nonce}"


def _mac(secret: bytes, text: str) -> str:
    digest = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key_id: str, secret: bytes, now: float) -> str:
    """A new session token for the key with this id and stored secret."""
    nonce = base64.urlsafe_b64encode(secrets.token_bytes(NONCE_BYTES)).decode().rstrip("=")
    signed = f"{key_id}.{int(now) + SESSION_SECONDS}.{nonce}"
    return f"{signed}.{_mac(secret, signed)}"


def parse(token: str | None) -> Claim | None:
    """The token's parts, or None for anything that is not a session token's shape."""
    match = _TOKEN.fullmatch(token or "")
    if match is None:
        return None
    key_id, expires, nonce, mac = match.groups()
    return Claim(key_id, int(expires), nonce, mac)


def valid(claim: Claim, secret: bytes, now: float) -> bool:
    """Whether the claim was signed with this secret and has not expired."""
    return now < claim.expires and hmac.compare_digest(_mac(secret, claim.signed), claim.mac)


def csrf_token(claim: Claim, secret: bytes) -> str:
    """The session's CSRF token: every form carries it, every POST is checked against it."""
    return _mac(secret, f"csrf.{claim.nonce}")


def same_token(presented: str | None, expected: str) -> bool:
    """Whether a form's CSRF token is the session's (in constant time)."""
    return presented is not None and secrets.compare_digest(presented.encode(), expected.encode())
