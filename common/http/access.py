"""Why a request's key is refused: the API's 401, 403 and 429 answers, the same from the
blocking routes (a key checked on the request's connection) and the coalesced ones (keys of
concurrent requests checked together)."""

from __future__ import annotations

from fastapi.security import HTTPAuthorizationCredentials

from jobfleet import apikeys, metrics
from jobfleet.apikeys import ApiKey, TokenTaken
from jobfleet.http.errors import ApiError

Credentials = HTTPAuthorizationCredentials | None

# The rate-limited counter's `key` label for requests refused before any key was verified
# (no key name can look like it: names start with a letter or a digit).
UNAUTHENTICATED = "(no valid key)"


def unauthorized(credentials: Credentials) -> ApiError:
    if credentials is None:
        return ApiError(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>` "
            "(create one with `jobfleet apikey create`)",
        )
    return ApiError(401, "unauthorized", "the API key is unknown, revoked or wrong")


def check_scope(key: ApiKey, scope: str) -> None:
    """403 unless the key has `scope`."""
    if scope not in key.scopes:
        raise ApiError(
            403,
            "forbidden",
            f"API key {key.name!r} lacks the {scope!r} scope "
            f"(it has: {', '.join(sorted(key.scopes))})",
        )


def check_rate(key: ApiKey, taken: TokenTaken) -> None:
    """429 when the key's bucket had no token for this request."""
    if not taken.allowed:
        metrics.metrics().rate_limited.labels(key.name).inc()
        raise ApiError(
            429,
            "rate_limited",
            f"API key {key.name!r} is over its rate of "
            f"{apikeys.format_rate(key.rate_per_second)}; retry after the wait",
            retry_after=round(taken.wait_seconds, 3),
        )
