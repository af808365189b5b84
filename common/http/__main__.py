"""The supervisor's HTTP child: `python -m jobfleet.http --fd N --role api|metrics`.

It inherits the listening socket, the database URL (JOBFLEET_DATABASE_URL) and the metrics
directory (PROMETHEUS_MULTIPROC_DIR) from the supervisor.
"""

from __future__ import annotations

import argparse
import socket
import sys

from jobfleet.db import database_url
from jobfleet.http.server import die_with_parent, serve, stop_on_signal
from jobfleet.log import setup_logging
from jobfleet.settings import load_settings


def main() -> int:
    stop_on_signal()
    parser = argparse.ArgumentParser(prog="jobfleet-http")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--role", choices=("api", "metrics"), default="api")
    args = parser.parse_args()
    die_with_parent()
    config = load_settings()
    setup_logging(config.log_level, config.log_format)
    serve(socket.socket(fileno=args.fd), database_url(config), config, args.role)
    return 0


if __name__ == "__main__":
    sys.exit(main())
