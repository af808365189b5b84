"""Connection strings in messages: read the way libpq reads them, every secret masked.

A password must never reach a message or a log line, including when the string is malformed:
libpq's own parse errors quote the string (`unexpected spaces found in "my secret"`), and a
URL whose password holds a raw '@' or '/' is split where its author did not mean, so part of
the password would show up as a host, a port or a database name.
"""

from __future__ import annotations

# Options whose values are secrets (sslpassword unlocks the client's private key).
SECRET_OPTIONS = ("password", "sslpassword")
MASK = "***"
REDACTED = "(not shown: libpq cannot read it as meant, and it may hold a password)"
URL_SCHEMES = ("postgresql://", "postgres://")


def mask_password(conninfo: str) -> str:
    """`conninfo` (a URL or key=value pairs) for messages and logs: unchanged when it holds
    no secret, otherwise libpq's reading of it with each secret as `***`, and REDACTED when
    libpq cannot read it as its author meant."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if _misread_url(conninfo):
        return REDACTED
    try:
        params = conninfo_to_dict(conninfo)
    except Error:
        return REDACTED
    secrets = [name for name in SECRET_OPTIONS if params.get(name)]
    if not secrets:
        return conninfo
    return make_conninfo("", **{**params, **dict.fromkeys(secrets, MASK)})


def conninfo_problem(conninfo: str) -> str | None:
    """Why libpq cannot use `conninfo` as meant, or None. Never quotes the string."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    if _misread_url(conninfo):
        return (
            "its user, password or database name holds a raw '@', '/' or '?', which libpq "
            "would split in the wrong place: percent-encode them (%40, %2F, %3F)"
        )
    try:
        conninfo_to_dict(conninfo)
    except Error:
        return (
            "libpq cannot parse it (its message is not shown, as it may quote the password): "
            "use a URL such as postgresql://user:pass@host:5432/db, percent-encoding spaces "
            "and '@' in the password (%20, %40), or key=value pairs with quoted values"
        )
    return None


def _misread_url(conninfo: str) -> bool:
    """A URL with a raw '@' libpq would not read as the end of `user:password`: libpq takes
    the first '@' before any '/' as that end, so a second '@', or one after a '/' or a '?',
    means some of the credentials land elsewhere."""
    for scheme in URL_SCHEMES:
        if conninfo.startswith(scheme):
            rest = conninfo[len(scheme) :]
            at = rest.find("@")
            return at >= 0 and (rest.count("@") > 1 or "/" in rest[:at] or "?" in rest[:at])
    return False
