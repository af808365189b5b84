"""The command line's options for serving HTTP: the supervisor's ports, and `jobfleet api`.
`port` is the parser's own check of a port number (cli/parser.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

PROCESSES_HELP = (
    "processes serving the API on its port (they share it); default: JOBFLEET_HTTP_PROCESSES, "
    "else one per CPU"
)


def add_supervisor_options(sup: argparse.ArgumentParser, port: Callable[[str], int]) -> None:
    sup.add_argument(
        "--http-port",
        type=port,
        default=None,
        metavar="PORT",
        help="serve the HTTP API (jobs, the web console at /ui, /metrics, /healthz, /readyz) "
        "on this port, "
        "in supervised children",
    )
    sup.add_argument(
        "--http-processes", type=_processes, default=None, metavar="N", help=PROCESSES_HELP
    )
    sup.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        metavar="PORT",
        help="serve /metrics, /healthz and /readyz alone on this port (no API)",
    )
    sup.add_argument(
        "--http-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the HTTP ports listen on (default: 127.0.0.1, this host only; 0.0.0.0 "
        "for every interface)",
    )


def add_api_parser(commands: Any, port: Callable[[str], int]) -> None:
    api = commands.add_parser(
        "api", help="serve the HTTP API and its web console (/ui) alone (for API-only hosts)"
    )
    api.add_argument("--port", type=port, required=True, metavar="P")
    api.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="default: 127.0.0.1, this host only; 0.0.0.0 for every interface",
    )
    api.add_argument("--processes", type=_processes, default=None, metavar="N", help=PROCESSES_HELP)


def _processes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process count: use 1 to 64")
    return value
