"""Connections: which cluster, with which timeouts, and what to say when it is not there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg.sql import SQL, Composed, Literal

from jobfleet.conninfo import conninfo_problem
from jobfleet.conninfo import mask_password as mask_password
from jobfleet.errors import ConfigError, DatabaseUnavailable
from jobfleet.queries import sql
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


def timeouts(config: Settings | None = None) -> dict[str, int]:
    """The server-side bounds every jobfleet connection runs under, in milliseconds: each
    statement, and a transaction left open by a client that went quiet."""
    config = config or settings()
    statement_ms = int(config.statement_timeout_seconds * 1000)
    return {
        "statement_timeout": statement_ms,
        "idle_in_transaction_session_timeout": max(statement_ms * 2, 60000),
    }


def connection_options(
    config: Settings | None = None, *, pooler_safe: bool = False
) -> dict[str, Any]:
    """Bounds on every wait: connecting, each statement, and a silent peer (keepalives).

    `pooler_safe` (the HTTP API): a connection that works through a transaction-mode pooler
    such as PgBouncer with its stock settings. The timeouts stay out of the startup packet
    (PgBouncer refuses `options`: "unsupported startup parameter") and are set at the start of
    each transaction instead (bounded_transaction); nothing is prepared on the server
    (prepare_threshold=None), since a prepared statement stays on the server connection it was
    made on while the client's next transaction runs on any other.
    """
    config = config or settings()
    options: dict[str, Any] = {
        "connect_timeout": max(1, round(config.connect_timeout_seconds)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "application_name": "jobfleet",
    }
    if pooler_safe:
        options["prepare_threshold"] = None
    else:
        options["options"] = " ".join(f"-c {k}={v}" for k, v in timeouts(config).items())
    return options


def begin_bounded(config: Settings | None = None) -> Composed:
    """BEGIN, with jobfleet's timeouts set for that transaction alone (SET LOCAL)."""
    values = {name: Literal(ms) for name, ms in timeouts(config).items()}
    return SQL(sql("begin_bounded")).format(**values)


@contextmanager
def bounded_transaction(conn: Connection, config: Settings | None = None) -> Iterator[None]:
    """A transaction on an autocommit connection that begins with jobfleet's timeouts set for
    it alone (SET LOCAL, in BEGIN's round trip), committed when the block ends and rolled back
    if it raises. The same bounds as startup options give, on a direct connection and through
    a transaction-mode pooler alike; what it costs is the BEGIN and COMMIT round trips."""
    conn.execute(begin_bounded(config))
    try:
        yield
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    conn.commit()


@asynccontextmanager
async def bounded_transaction_async(
    conn: psycopg.AsyncConnection[Any], config: Settings | None = None
) -> AsyncIterator[None]:
    """`bounded_transaction` for an asyncio connection."""
    await conn.execute(begin_bounded(config))
    try:
        yield
    except BaseException:
        if not conn.closed:
            await conn.rollback()
        raise
    await conn.commit()


def connect(
    url: str | None = None,
    *,
    autocommit: bool = False,
    config: Settings | None = None,
    pooler_safe: bool = False,
) -> Connection:
    """A new connection, or DatabaseUnavailable saying which URL failed and what to do.
    `pooler_safe`: see connection_options (its statements belong in a bounded_transaction)."""
    config = config or settings()
    options = connection_options(config, pooler_safe=pooler_safe)
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
