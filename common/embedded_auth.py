"""Who the embedded PostgreSQL admits: pg_hba.conf and pg_ident.conf as jobfleet writes them
at every start (Unix socket, peer authentication, a map naming the OS users allowed in)."""

from __future__ import annotations

SUPERUSER = "postgres"

# pg_ident.conf's map: the OS users allowed in, each as the database superuser alone.
IDENT_MAP = "jobfleet"
HBA_CONF = f"""\
# Written by jobfleet at every start of the embedded PostgreSQL; edits are overwritten.
# Unix socket only, peer authentication: the OS users that pg_ident.conf's map "{IDENT_MAP}"
# names may connect, as the database user {SUPERUSER}; nobody else, and nothing over TCP.
local   all   all                 peer   map={IDENT_MAP}
host    all   all   all           reject
"""


def auth_files(users: list[str]) -> dict[str, str]:
    """The two files' text, letting exactly `users` in, each as the superuser alone."""
    ident = (
        "# Written by jobfleet at every start of the embedded PostgreSQL; edits are "
        "overwritten.\n# The OS users who may connect, each as the database user "
        f"{SUPERUSER} alone.\n"
    )
    ident += "".join(f"{IDENT_MAP}   {user}   {SUPERUSER}\n" for user in users)
    return {"pg_hba.conf": HBA_CONF, "pg_ident.conf": ident}
