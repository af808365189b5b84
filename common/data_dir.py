"""Where the embedded PostgreSQL lives when JOBFLEET_DATA_DIR is unset: one place per user,
the same from any working directory (so `cd myapp && jobfleet status` reaches the cluster the
user already has, not a new one)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

# Root's cluster: a place the service user can reach, whatever root's working directory.
ROOT_DATA_DIR = Path("/var/lib/jobfleet")


def default_data_dir(euid: int | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The embedded cluster's home when JOBFLEET_DATA_DIR is unset: one per user, the same from
    any working directory. Root's is /var/lib/jobfleet, which the service user can reach;
    anyone else's is $XDG_DATA_HOME/jobfleet (~/.local/share/jobfleet)."""
    euid = os.geteuid() if euid is None else euid
    environ = os.environ if environ is None else environ
    if euid == 0:
        return ROOT_DATA_DIR
    xdg = environ.get("XDG_DATA_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is invalid and ignored
        return Path(xdg) / "jobfleet"
    home = environ.get("HOME") or pwd.getpwuid(euid).pw_dir
    return Path(home) / ".local" / "share" / "jobfleet"
