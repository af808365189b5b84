"""Flow control from the command line: queues (list, pause, resume), periodic jobs, and the
limits per job type (types list, types set)."""

from __future__ import annotations

import argparse
from typing import Any

from jobfleet import admin, type_limits
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


TYPE_COLUMNS = columns(
    "type",
    ("queue", lambda t: t["queue"] or "-"),
    ("max running", lambda t: _limit(t, "max_running")),
    ("rate", lambda t: _limit(t, "rate")),
    ("limit key", lambda t: _limit(t, "limit_key")),
    "running",
    ("started in window", lambda t: "-" if t["rate_used"] is None else t["rate_used"]),
)


def _limit(row: dict[str, Any], name: str) -> str:
    """The limit in force; "(set)" when set at run time over what the decorator says."""
    value = "none" if row[name] is None else str(row[name])
    return f"{value} (set)" if name in row["set_at_run_time"] else value


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
    types = commands.add_parser("types", help="job types: their defaults and limits")
    type_cmds = types.add_subparsers(dest="types_command", metavar="SUBCOMMAND", required=True)
    tl = type_cmds.add_parser(
        "list", help="each type's defaults, limits (max_running, rate) and running jobs"
    )
    tl.add_argument("--json", action="store_true")
    ts = type_cmds.add_parser(
        "set",
        help="change a type's limits for every node, at once; 'none' removes one, 'default' "
        "goes back to what the handler's decorator says",
    )
    ts.add_argument("type", metavar="TYPE")
    ts.add_argument(
        "--max-running", metavar="N|none|default", help="jobs of TYPE running at once, at most"
    )
    ts.add_argument(
        "--rate", metavar="N/s|N/m|N/h|none|default", help="jobs of TYPE started per period"
    )
    ts.add_argument(
        "--limit-key",
        metavar="FIELD|none|default",
        help="the payload field the limits hold per value of (per customer, say), its keys "
        "claimed in turns; none: the limits hold for the whole type",
    )


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


def cmd_types(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        if args.types_command == "list":
            print(listing(type_limits.list_types(conn), TYPE_COLUMNS, as_json=args.json))
            return 0
        if args.max_running is None and args.rate is None and args.limit_key is None:
            raise ValueError("types set: give --max-running, --rate, --limit-key or several")
        shown = type_limits.set_limits(
            conn,
            args.type,
            max_running=args.max_running,
            rate=args.rate,
            limit_key=args.limit_key,
        )
        conn.commit()
    print(
        f"type {shown['type']}: max running {_limit(shown, 'max_running')}, "
        f"rate {_limit(shown, 'rate')}, limit key {_limit(shown, 'limit_key')}"
    )
    return 0
