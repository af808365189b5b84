"""Entry point of the `jobfleet` console script."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobfleet.errors import (
    ConfigError,
    DatabaseUnavailable,
    JobfleetError,
    SchemaOutOfDate,
)

EXIT_USAGE = 2
EXIT_DATABASE = 3


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the supervisor took over its signals
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from jobfleet.log import setup_logging
    from jobfleet.settings import load_settings
    from jobfleet.supervisor.cli.commands import COMMANDS, EXIT_FAILED
    from jobfleet.supervisor.cli.parser import build_parser

    args = build_parser().parse_args(argv)
    try:
        config = load_settings()
        setup_logging(config.log_level, config.log_format)
        return COMMANDS[args.command](args, config)
    except ConfigError as exc:
        return _fail(f"bad setting: {exc}", EXIT_USAGE)
    except (ValueError, ImportError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (DatabaseUnavailable, SchemaOutOfDate) as exc:
        return _fail(str(exc), EXIT_DATABASE)
    except JobfleetError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _database_error(exc)


def _database_error(exc: Exception) -> int:
    import psycopg

    if isinstance(exc, psycopg.errors.UndefinedTable):
        return _fail("the database has no jobfleet schema: run `jobfleet migrate`", EXIT_DATABASE)
    if isinstance(exc, psycopg.OperationalError):
        return _fail(f"lost the database: {str(exc).strip()}", EXIT_DATABASE)
    if isinstance(exc, psycopg.Error):
        return _fail(f"database error: {str(exc).strip()}", EXIT_DATABASE)
    raise exc


def _fail(message: str, code: int) -> int:
    print(f"jobfleet: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
