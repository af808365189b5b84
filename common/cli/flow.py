"""Flow control from the command line: queues (list, pause, resume) and periodic jobs."""

from __future__ import annotations

import argparse
from typing import Any

from jobfleet import admin
from jobfleet.cli.render import columns, listing
from jobfleet.db import connect
from jobfleet.options import STATES
from jobfleet.settings import Settings

QUEUE_COLUMNS = columns(
    "queue",
    *((state, lambda q, state=state: q["counts"][state]) for state in STATES),
    ("paused", lambda q: "paused" if q["paused"] else ""),
)


CRON_COLUMNS = columns(
    "type",
    "schedule",
    ("last run", lambda c: c["last_run"] or "-"),
    ("next run", lambda c: c["next_run"] if c["active"] else "- (no live node declares it)"),
    ("last job", lambda c: c["last_job"] or "-"),
)


def add_parsers(commands: Any) -> None:
    queues = commands.add_parser("queues", help="queues: list them, pause or resume one")
    queue_cmds = queues.add_subparsers(dest="queues_command", metavar="SUBCOMMAND", required=True)
    ql = queue_cmds.add_parser("list", help="each queue's jobs by state, and whether it is paused")
    ql.add_argument("--json", action="store_true")
    for verb, what in (
        ("pause", "no node claims from the queue any more (within 1 s); running jobs finish"),
        ("resume", "nodes claim from the queue again"),
    ):
        cmd = queue_cmds.add_parser(verb, help=what)
        cmd.add_argument("queue", metavar="Q")
    cron = commands.add_parser("cron", help="periodic jobs (@handler(cron=..., every=...))")
    cron_cmds = cron.add_subparsers(dest="cron_command", metavar="SUBCOMMAND", required=True)
    cl = cron_cmds.add_parser("list", help="each periodic job's schedule, last and next run")
    cl.add_argument("--json", action="store_true")


def cmd_cron(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        print(listing(admin.cron_list(conn), CRON_COLUMNS, as_json=args.json))
    return 0


def cmd_queues(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        if args.queues_command == "list":
            print(listing(admin.queues(conn), QUEUE_COLUMNS, as_json=args.json))
            return 0
        paused = admin.set_paused(conn, args.queue, args.queues_command == "pause")
        conn.commit()
    print(f"queue {args.queue} {'paused' if paused else 'resumed'}")
    return 0
