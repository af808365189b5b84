"""Connections: which cluster, with which timeouts, and what to say when it is not there."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from jobfleet.conninfo import conninfo_problem
from jobfleet.conninfo import mask_password as mask_password
from jobfleet.errors import ConfigError, DatabaseUnavailable
from jobfleet.settings import Settings, settings
from jobfleet.tolerant import tolerate

Connection = psycopg.Connection[TupleRow]


def database_url(config: Settings | None = None, *, verify: bool = False) -> str:
    """JOBFLEET_DATABASE_URL, or the embedded cluster's URL (starting it if it is down).

    Without `verify`, an embedded cluster whose pid file and socket exist is taken as running;
    connect() verifies it the hard way only when connecting fails.
    """
    config = config or settings()
    if config.database_url:
        return config.database_url
    from jobfleet.embedded import EmbeddedCluster

    cluster = EmbeddedCluster(config.data_dir)
    if not verify and cluster.looks_running():
        return cluster.url()
    return cluster.ensure_running()


def connection_options(config: Settings | None = None) -> dict[str, Any]:
    """Bounds on every wait: connecting, each statement, and a silent peer (keepalives)."""
    config = config or settings()
    statement_ms = int(config.statement_timeout_seconds * 1000)
    return {
        "connect_timeout": max(1, round(config.connect_timeout_seconds)),
        "options": f"-c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout="
        f"{max(statement_ms * 2, 60000)}",
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "application_name": "jobfleet",
    }


def connect(
    url: str | None = None, *, autocommit: bool = False, config: Settings | None = None
) -> Connection:
    """A new connection, or DatabaseUnavailable saying which URL failed and what to do."""
    config = config or settings()
    options = connection_options(config)
    if url is None and not config.database_url:
        url = database_url(config)
        try:
            return _tolerant(psycopg.connect(url, autocommit=autocommit, **options))
        except psycopg.OperationalError:
            url = database_url(config, verify=True)  # stale pid file: start it for real
    url = url or database_url(config)
    try:
        return _tolerant(psycopg.connect(url, autocommit=autocommit, **options))
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc, config) from None
    except psycopg.ProgrammingError:  # libpq cannot parse it; its message may quote a password
        raise ConfigError(
            f"the database URL {mask_password(url)} cannot be used: {conninfo_problem(url)}"
        ) from None


def _tolerant(conn: Connection) -> Connection:
    tolerate(conn)  # rows with values Python cannot hold still read (jobfleet.tolerant)
    return conn


def which_database(config: Settings) -> str | None:
    """For messages: which embedded cluster is meant (its data dir and URL), or None when
    JOBFLEET_DATABASE_URL names the cluster. A user told to run `jobfleet migrate` must know
    where."""
    if config.database_url:
        return None
    from jobfleet.embedded import EmbeddedCluster

    return EmbeddedCluster(config.data_dir).where()


def unavailable(
    url: str, exc: BaseException, config: Settings | None = None
) -> DatabaseUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if config is not None and not config.database_url:
        from jobfleet.embedded import EmbeddedCluster

        cluster = EmbeddedCluster(config.data_dir)
        return DatabaseUnavailable(
            f"cannot connect to the embedded PostgreSQL in {cluster.home} at {url}: {reason}. "
            f"Its log is {cluster.log_file}; `jobfleet db stop` stops it (the next command "
            "starts it again), or set JOBFLEET_DATABASE_URL to use another cluster."
        )
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {mask_password(url)}: {reason}. "
        "Check that the server is running and JOBFLEET_DATABASE_URL is right "
        "(unset it to use the embedded PostgreSQL)."
    )


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database (URL or key=value input; the
    conninfo string libpq makes of it out)."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def require_sync(conn: Any, call: str) -> None:
    """A connection the synchronous API can use; an asyncio one is a TypeError naming the call
    of jobfleet.aio to use instead (else psycopg fails on a coroutine, far from the cause)."""
    if isinstance(conn, psycopg.AsyncConnection):
        raise TypeError(
            f"jobfleet.{call}() takes a psycopg.Connection; for an AsyncConnection use "
            f"`await jobfleet.aio.{call}(...)`"
        )
