"""Entry point of the `jobfleet` console script."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from jobfleet.errors import (
    ConfigError,
    DatabaseUnavailable,
    JobfleetError,
    SchemaOutOfDate,
)

if TYPE_CHECKING:
    from jobfleet.settings import Settings

EXIT_USAGE = 2
EXIT_DATABASE = 3
# Commands that own and close everything they open (children reaped, connections closed,
# metric files removed) before they return, so their process can leave without tearing the
# interpreter down: that teardown frees every object of psycopg, pydantic and asyncio one by
# one, about 70 ms: 4 % of a 100k-job burst from start to exit.
LEAVE_AT_ONCE = frozenset({"supervisor"})


def main(argv: Sequence[str] | None = None, *, leave_at_once: bool = False) -> int:
    try:
        return _main(argv, leave_at_once)
    except KeyboardInterrupt:  # Ctrl-C before the supervisor took over its signals
        return 130


def run() -> NoReturn:
    """The console script."""
    sys.exit(main(leave_at_once=True))


def _leave(code: int) -> NoReturn:
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _main(argv: Sequence[str] | None, leave_at_once: bool) -> int:
    from jobfleet.cli.commands import COMMANDS, EXIT_FAILED
    from jobfleet.cli.parser import build_parser
    from jobfleet.log import setup_logging
    from jobfleet.settings import load_settings

    args = build_parser().parse_args(argv)
    config = None
    try:
        config = load_settings()
        setup_logging(config.log_level, config.log_format)
        code = COMMANDS[args.command](args, config)
        if leave_at_once and args.command in LEAVE_AT_ONCE:
            _leave(code)
        return code
    except ConfigError as exc:
        return _fail(f"bad setting: {exc}", EXIT_USAGE)
    except (ValueError, ImportError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (DatabaseUnavailable, SchemaOutOfDate) as exc:
        return _fail(_naming_the_cluster(str(exc), config), EXIT_DATABASE)
    except JobfleetError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _database_error(exc, config)


def _database_error(exc: Exception, config: Settings | None) -> int:
    import psycopg

    if isinstance(exc, psycopg.errors.UndefinedTable):
        message = "the database has no jobfleet schema: run `jobfleet migrate`"
    elif isinstance(exc, psycopg.errors.UndefinedFunction) and "jobfleet_" in str(exc):
        # One of our functions (jobfleet_enqueue, ...) is missing: no schema, or an older one.
        message = "the database's jobfleet schema is missing or older: run `jobfleet migrate`"
    elif isinstance(exc, psycopg.OperationalError):
        message = f"lost the database: {str(exc).strip()}"
    elif isinstance(exc, psycopg.Error):
        message = f"database error: {str(exc).strip()}"
    else:
        raise exc
    return _fail(_naming_the_cluster(message, config), EXIT_DATABASE)


def _naming_the_cluster(message: str, config: Settings | None) -> str:
    """A database error about the embedded cluster says which one (its data dir and URL), so
    that "run `jobfleet migrate`" or "cannot connect" points at one place."""
    if config is None or config.database_url:
        return message
    from jobfleet.db import which_database
    from jobfleet.embedded import EmbeddedCluster

    if str(EmbeddedCluster(config.data_dir).home) in message:
        return message
    try:
        return f"{message} [database: {which_database(config)}]"
    except JobfleetError:
        return message


def _fail(message: str, code: int) -> int:
    print(f"jobfleet: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
