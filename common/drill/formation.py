"""A replication pair on this machine: a primary and a synchronous standby made with
PostgreSQL's own programs (initdb, pg_basebackup -R, pg_ctl), reached through one multi-host
URL with target_session_attrs=read-write, as an HA set-up is. For the failover test and
drill: kill the primary (`pg_ctl stop -m immediate`), promote the standby (`pg_ctl promote`).

Everything lives in one temporary directory that `close()` removes, whatever happened. Under
root the programs run as the `postgres` user (PostgreSQL refuses root), otherwise as the
caller. Connections are over 127.0.0.1 with a random password (scram); the sockets are in the
private directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from jobfleet.errors import JobfleetError
from jobfleet.http.server import free_port
from jobfleet.polling import wait_until

SERVER_USER = "postgres"  # who runs the servers when we are root
SUPERUSER = "postgres"  # the clusters' superuser (initdb -U)
DATABASE = "jobfleet"
STANDBY_NAME = "standby"  # its application_name, as the primary's pg_stat_replication shows
START_SECONDS = 60  # pg_ctl -t: a loaded 2-core machine starts a cluster in a few seconds
# Settings both servers share. The standby is a copy of the primary's data directory, so its
# postgresql.conf is this with its own port appended.
SHARED_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
max_connections = 100
wal_level = replica
max_wal_senders = 5
wal_keep_size = '256MB'
hot_standby = on
"""


def find_bindir(candidates: Sequence[Path] | None = None) -> Path | None:
    """The folder with PostgreSQL's server programs: the newest /usr/lib/postgresql/N/bin
    (Debian's layout), else `pg_ctl` on the PATH."""
    if candidates is None:
        root = Path("/usr/lib/postgresql")
        versions = (
            [p for p in root.glob("*/bin") if p.parent.name.isdigit()] if root.is_dir() else []
        )
        candidates = sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "pg_ctl").exists() and (bindir / "pg_basebackup").exists():
            return bindir
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    data: Path

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.name}.log"


class Formation:
    """A primary and its synchronous standby. Use as a context manager, or call close()."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.password = secrets.token_urlsafe(18)
        self.home = Path(tempfile.mkdtemp(prefix="jobfleet-formation-"))
        self.as_root = os.geteuid() == 0
        self.primary = Server("primary", free_port(), self.home / "primary")
        self.standby = Server("standby", free_port(), self.home / "standby")
        self.home.chmod(0o700)
        if self.as_root:
            self._own(self.home, 0o700)

    def __enter__(self) -> Formation:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Both servers, the writable one chosen at each connect (libpq's multi-host URL)."""
        return (
            f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.primary.port},"
            f"127.0.0.1:{self.standby.port}/{DATABASE}?target_session_attrs=read-write"
        )

    def server_url(self, server: Server, dbname: str = DATABASE) -> str:
        return (
            f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{server.port}/{dbname}"
            "?connect_timeout=5"
        )

    def start(self) -> None:
        """initdb the primary, start it, copy it into a standby with pg_basebackup -R, start
        that, wait for it to stream, then make it synchronous: from then on a commit the
        primary acknowledges is on the standby too."""
        pwfile = self.home / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        self._run(
            "initdb",
            "-D", str(self.primary.data),
            "-U", SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--no-instructions",
            "-E", "UTF8",
            "--locale=C",
        )  # fmt: skip
        pwfile.unlink()
        conf = SHARED_CONF.format(sockets=self.home)
        with (self.primary.data / "postgresql.conf").open("a") as f:
            f.write(conf + f"port = {self.primary.port}\n")
        self._pg_ctl(
            self.primary, "start", "-w", "-t", str(START_SECONDS), "-l", str(self.primary.log)
        )
        with psycopg.connect(self.server_url(self.primary, "postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        self._run(
            "pg_basebackup",
            "-D", str(self.standby.data),
            "-d", f"host=127.0.0.1 port={self.primary.port} user={SUPERUSER} "
            f"application_name={STANDBY_NAME}",
            "-R",  # standby.signal and primary_conninfo (with the password) for the copy
            "-X", "stream",
            "-c", "fast",
        )  # fmt: skip
        with (self.standby.data / "postgresql.conf").open("a") as f:
            f.write(f"port = {self.standby.port}\n")
        self._pg_ctl(
            self.standby, "start", "-w", "-t", str(START_SECONDS), "-l", str(self.standby.log)
        )
        with psycopg.connect(self.server_url(self.primary), autocommit=True) as conn:
            wait_until(lambda: self._replication_state(conn) == "streaming", 60, "the standby")
            conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
            conn.execute("SELECT pg_reload_conf()")
            wait_until(lambda: self._sync_state(conn) == "sync", 30, "a synchronous standby")

    def kill_primary(self) -> None:
        """The primary's postmaster and every backend quit at once, with no shutdown
        checkpoint: what a crash or a power cut leaves (it would recover on restart)."""
        self._pg_ctl(self.primary, "stop", "-m", "immediate", "-w")

    def promote(self) -> None:
        """The standby becomes the primary; returns once it accepts writes."""
        self._pg_ctl(self.standby, "promote", "-w", "-t", str(START_SECONDS))

    def failover_command(self, outage_seconds: float) -> str:
        """A shell command doing what a failover manager does, for `jobfleet drill
        --failover`: the primary dies, the standby is promoted `outage_seconds` later (the
        manager's time to decide)."""
        kill = self._argv("pg_ctl", "-D", str(self.primary.data), "stop", "-m", "immediate", "-w")
        promote = self._argv("pg_ctl", "-D", str(self.standby.data), "promote", "-w")
        return f"{shlex.join(kill)} && sleep {outage_seconds:g} && {shlex.join(promote)}"

    def close(self) -> None:
        """Stop whatever still runs, and remove every file."""
        for server in (self.standby, self.primary):
            if (server.data / "postmaster.pid").exists():
                with contextlib.suppress(JobfleetError):
                    self._pg_ctl(server, "stop", "-m", "immediate", "-w")
        shutil.rmtree(self.home, ignore_errors=True)

    def logs(self) -> str:
        """The servers' logs, for a failure message."""
        parts = []
        for server in (self.primary, self.standby):
            with contextlib.suppress(OSError):
                tail = server.log.read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- {server.name} ({server.log}):\n" + "\n".join(tail))
        return "\n".join(parts)

    def _replication_state(self, conn: psycopg.Connection[Any]) -> str | None:
        row = conn.execute(
            "SELECT state FROM pg_stat_replication WHERE application_name = %s", (STANDBY_NAME,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _sync_state(self, conn: psycopg.Connection[Any]) -> str | None:
        row = conn.execute(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
            (STANDBY_NAME,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _pg_ctl(self, server: Server, *args: str) -> None:
        self._run("pg_ctl", "-D", str(server.data), *args)

    def _own(self, path: Path, mode: int = 0o600) -> None:
        """The servers' user's (under root), and no one else's."""
        if self.as_root:
            try:
                entry = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.home, ignore_errors=True)
                raise JobfleetError(
                    f"PostgreSQL refuses to run as root, and there is no {SERVER_USER!r} user "
                    "to run it as (Debian's postgresql packages create it)"
                ) from None
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(mode)

    def _argv(self, program: str, *args: str) -> list[str]:
        argv = [str(self.bindir / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *argv] if self.as_root else argv

    def _run(self, program: str, *args: str) -> None:
        argv = self._argv(program, *args)
        env = {**os.environ, "PGPASSWORD": self.password, "LC_ALL": "C"}
        done = subprocess.run(
            argv, cwd=self.home, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise JobfleetError(
                f"{program} {' '.join(args[:2])} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
