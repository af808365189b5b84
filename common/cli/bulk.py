"""Changing many jobs at once from the command line: `jobs cancel --type T [--queue Q]` and the
dead-letter queue's commands (`dlq retry --type T` among them), in bounded batches
(jobfleet.bulk) with progress on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobfleet import admin, bulk
from jobfleet.cli.render import DEAD_JOB_COLUMNS, dumps, listing
from jobfleet.db import connect
from jobfleet.options import parse_duration
from jobfleet.settings import Settings


def add_jobs_cancel(jobs_cmds: Any) -> None:
    jc = jobs_cmds.add_parser(
        "cancel",
        help="cancel every queued job (scheduled ones too) of a type and/or queue, in batches; "
        "running jobs are left alone; prints how many",
    )
    jc.add_argument("--type", default=None, metavar="T", help="the queued jobs of this type")
    jc.add_argument("--queue", default=None, metavar="Q", help="the queued jobs in this queue")
    jc.add_argument("--json", action="store_true", help='print {"changed": N}')


def add_dlq(commands: Any, job_id: Any, list_limit: Any) -> None:
    dlq = commands.add_parser("dlq", help="the dead-letter queue: dead jobs")
    dlq_cmds = dlq.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND", required=True)
    dl = dlq_cmds.add_parser("list", help="dead jobs with their last error")
    dl.add_argument("--limit", type=list_limit, default=100, metavar="N")
    dl.add_argument("--json", action="store_true")
    dr = dlq_cmds.add_parser(
        "retry", help="queue a dead job, all of them, or those of a type again, fresh attempts"
    )
    which = dr.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=job_id, nargs="?", metavar="ID")
    which.add_argument("--all", action="store_true", help="every dead job, in batches")
    which.add_argument(
        "--type", default=None, metavar="T", help="the dead jobs of this type, in batches"
    )
    dr.add_argument("--json", action="store_true", help='print {"changed": N}')
    dp = dlq_cmds.add_parser("purge", help="delete dead jobs")
    dp.add_argument(
        "--older-than",
        default=None,
        metavar="DURATION",
        help="only those dead for longer, e.g. 7d, 12h, 30m, 45s (default: all)",
    )


def cmd_jobs_cancel(args: argparse.Namespace, config: Settings) -> int:
    if args.type is None and args.queue is None:
        raise ValueError("jobs cancel: give --type, --queue or both")
    with connect(config=config, autocommit=True) as conn:
        changed = bulk.cancel_queued(
            conn, bulk.JobFilter(args.type, args.queue), _batches(config, "cancelled")
        )
    _changed(args, changed, "cancelled")
    return 0


def cmd_dlq(args: argparse.Namespace, config: Settings) -> int:
    if args.dlq_command == "retry" and (args.type is not None or args.all):
        # Every dead job too in batches: one statement over a big dead-letter queue held its
        # rows' locks and a transaction open until the last row was written.
        where = bulk.JobFilter(every=True) if args.all else bulk.JobFilter(type=args.type)
        with connect(config=config, autocommit=True) as conn:
            changed = bulk.retry_dead(conn, where, _batches(config, "queued again"))
        _changed(args, changed, "queued again")
        return 0
    with connect(config=config) as conn:
        if args.dlq_command == "list":
            jobs = admin.dlq_list(conn, args.limit)
            print(listing(jobs, DEAD_JOB_COLUMNS, as_json=args.json))
            return 0
        if args.dlq_command == "retry":
            _changed(args, len(admin.dlq_retry(conn, args.id)), "queued again")
            return 0
        older = None
        if args.older_than is not None:
            older = parse_duration("--older-than", args.older_than)
        purged = admin.dlq_purge(conn, older)
        print(f"purged: {purged} dead job{'s' if purged != 1 else ''}")
        return 0


def _batches(config: Settings, done: str) -> bulk.Batches:
    """Batches with the command's settings, and progress on stderr once a run takes more than
    one batch."""

    def show(total: int) -> None:
        if total >= bulk.BATCH_SIZE:
            print(f"jobfleet: {total} {done} so far", file=sys.stderr, flush=True)

    return bulk.Batches(config=config, progress=show)


def _changed(args: argparse.Namespace, changed: int, done: str) -> None:
    if args.json:
        print(dumps({"changed": changed}))
    else:
        print(f"{done}: {changed} job{'s' if changed != 1 else ''}")
