"""The `jobfleet` command line: every command, flag and help text in one place."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

import jobfleet
from jobfleet.cli import bulk, flow, http_args
from jobfleet.options import ID_MAX, STATES

DESCRIPTION = (
    "jobfleet: a job-processing system on PostgreSQL. Settings come from JOBFLEET_* environment "
    "variables (see the README); with JOBFLEET_DATABASE_URL unset, an embedded PostgreSQL is "
    "started under JOBFLEET_DATA_DIR (default: per user, $XDG_DATA_HOME/jobfleet, or "
    "/var/lib/jobfleet for root)."
)
EPILOG = (
    "exit status: 0 success; 1 the operation failed (unknown job, job not cancellable, job "
    "ended dead/cancelled for `jobs wait`); 2 bad input or settings; 3 database unreachable "
    "or schema out of date; 124 `jobs wait` timed out."
)


class Parser(argparse.ArgumentParser):
    """Usage errors in one line on stderr (exit 2), like every other bad input, pointing at
    the help of the command that was being used."""

    words: Sequence[str] = ()

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> Any:
        self.words = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self._help_for()} --help)\n")

    def _help_for(self) -> str:
        """`jobfleet enqueue` for an unknown flag after `enqueue`: argparse reports those
        from the top-level parser, whose own help would not list the flag."""
        commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands:
            return self.prog
        choices = commands[0].choices
        words = [w for w in self.words if not w.startswith("-")]
        if not words or words[0] not in choices:
            return self.prog
        sub = choices[words[0]]
        if isinstance(sub, Parser):
            sub.words = self.words[self.words.index(words[0]) + 1 :]
            return sub._help_for()
        return str(sub.prog)


Number = TypeVar("Number", int, float)


def _number(text: str, kind: type[Number], what: str) -> Number:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def failover_command(value: str) -> str:
    if not value.strip() or "\0" in value:
        raise argparse.ArgumentTypeError("the failover command must be a non-empty shell command")
    return value


def positive_int(text: str) -> int:
    if (value := _number(text, int, "a whole number")) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def job_id(text: str) -> int:
    value = _number(text, int, "a job id (a whole number)")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (ids start at 1)")
    if value > ID_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (ids end at {ID_MAX})")
    return value


def list_limit(text: str) -> int:
    """How many rows a listing prints: 1 to LIST_LIMIT_MAX."""
    from jobfleet.admin import LIST_LIMIT_MAX

    if (value := positive_int(text)) > LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is too many: use 1 to {LIST_LIMIT_MAX}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number of seconds")
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def port(text: str) -> int:
    if not 1 <= (value := _number(text, int, "a port number")) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 1 to 65535")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="jobfleet", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument(
        "--version",
        action="version",
        version=f"jobfleet {jobfleet.__version__}",
        help="print the version",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "migrate", help="create or upgrade the schema (idempotent, safe from many hosts at once)"
    )

    sup = commands.add_parser("supervisor", help="run this node: claim, run and record jobs")
    sup.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes (default: the CPU count)",
    )
    sup.add_argument(
        "--handlers",
        default="jobfleet.worker.examples",
        metavar="MODULE[,MODULE]",
        help="modules whose @handler functions this node runs (default: jobfleet.worker.examples)",
    )
    sup.add_argument(
        "--pythonpath",
        default=None,
        metavar="DIR[:DIR]",
        help="folders to import handler modules from, searched first (the working directory "
        "comes next, as with python -m)",
    )
    sup.add_argument(
        "--queues",
        default=None,
        metavar="A,B",
        help="serve only these queues (default: every queue)",
    )
    sup.add_argument(
        "--node-name",
        default=None,
        metavar="NAME",
        help="this node's name in the registry (default: JOBFLEET_NODE_NAME, else HOST-PID)",
    )
    http_args.add_supervisor_options(sup, port)
    sup.add_argument(
        "--burst",
        action="store_true",
        help="exit 0 once no job this node can run is ready or running",
    )

    enq = commands.add_parser("enqueue", help="add a job (prints its id) or many from JSONL")
    enq.add_argument("type", metavar="TYPE", help="the job type (a registered handler's name)")
    source = enq.add_mutually_exclusive_group()
    source.add_argument(
        "--payload", default=None, metavar="JSON", help="the job's payload as JSON (default: null)"
    )
    source.add_argument(
        "--from-jsonl",
        default=None,
        metavar="FILE|-",
        help="one JSON payload per line, enqueued in one transaction with COPY; prints the count",
    )
    enq.add_argument("--queue", default=None, metavar="Q")
    enq.add_argument(
        "--priority", default=None, metavar="P", help="0 to 32767, higher runs first (default 0)"
    )
    when = enq.add_mutually_exclusive_group()
    when.add_argument(
        "--delay",
        default=None,
        metavar="SECONDS",
        help="run no sooner than this many seconds from now",
    )
    when.add_argument(
        "--run-at",
        default=None,
        metavar="ISO8601",
        help="run no sooner than this time (UTC when no offset is given)",
    )
    enq.add_argument("--max-attempts", default=None, metavar="N", help="default 5")
    enq.add_argument(
        "--timeout", default=None, metavar="SECONDS", help="kill an attempt that runs longer"
    )
    enq.add_argument(
        "--backoff",
        default=None,
        metavar="STRATEGY[:SECONDS]",
        help="retry delay: exponential (default), linear or fixed, with an "
        "optional base, e.g. fixed:10",
    )
    enq.add_argument(
        "--idempotency-key",
        default=None,
        metavar="KEY",
        help="a second enqueue with the same key returns the first job's id",
    )
    enq.add_argument(
        "--unique-for",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="a job of the same type and payload enqueued within SECONDS returns the first "
        "one's id, whatever its state",
    )

    stat = commands.add_parser("status", help="job counts, live nodes, unhandled job types")
    stat.add_argument("--json", action="store_true")

    jobs = commands.add_parser("jobs", help="list, show, wait for or cancel jobs")
    jobs_cmds = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    jl = jobs_cmds.add_parser("list", help="jobs, newest first")
    jl.add_argument("--state", default=None, metavar="S", help=f"one of {', '.join(STATES)}")
    jl.add_argument("--type", default=None, metavar="T")
    jl.add_argument("--queue", default=None, metavar="Q")
    jl.add_argument("--node", default=None, metavar="N", help="jobs held or run by this node")
    jl.add_argument("--limit", type=list_limit, default=50, metavar="N", help="default 50")
    jl.add_argument("--json", action="store_true")
    js = jobs_cmds.add_parser("show", help="one job with its attempts")
    js.add_argument("id", type=job_id, metavar="ID")
    js.add_argument("--json", action="store_true")
    jw = jobs_cmds.add_parser("wait", help="block until the job ends; print its result")
    jw.add_argument("id", type=job_id, metavar="ID")
    jw.add_argument("--timeout", type=non_negative_float, default=None, metavar="SECONDS")
    jw.add_argument("--json", action="store_true", help="print the whole job as JSON")
    bulk.add_jobs_cancel(jobs_cmds)

    cancel = commands.add_parser(
        "cancel", help="cancel a queued job, or ask the node running it to stop it"
    )
    cancel.add_argument("id", type=job_id, metavar="ID")

    bulk.add_dlq(commands, job_id, list_limit)

    flow.add_parsers(commands)

    http_args.add_api_parser(commands, port)

    key = commands.add_parser("apikey", help="API keys for the HTTP API: create, list, revoke")
    key_cmds = key.add_subparsers(dest="apikey_command", metavar="SUBCOMMAND", required=True)
    kc = key_cmds.add_parser(
        "create", help="make a key; it is printed once, alone on the last line"
    )
    kc.add_argument("--name", required=True, metavar="N", help="a unique name for the key")
    kc.add_argument(
        "--scopes",
        required=True,
        metavar="S[,S]",
        help="what the key may do, comma-separated: enqueue, read, cancel, admin (retry, "
        "pause, resume)",
    )
    kc.add_argument(
        "--rate",
        default=None,
        metavar="N/s",
        help="requests allowed per second across the whole cluster (also N/min, N/h; "
        "default: no limit)",
    )
    kl = key_cmds.add_parser("list", help="keys with their scopes and rates (never the keys)")
    kl.add_argument("--json", action="store_true")
    kr = key_cmds.add_parser("revoke", help="stop a key from working, at once")
    kr.add_argument("name", metavar="NAME")

    drill = commands.add_parser(
        "drill",
        help="the recovery drill: local nodes, a mixed workload, killed and paused nodes (or "
        "a primary failover), then the invariants (exit 0 only if all hold)",
    )
    drill.add_argument(
        "--nodes", type=positive_int, default=3, metavar="K", help="supervisors (default 3)"
    )
    drill.add_argument(
        "--jobs", type=positive_int, default=3000, metavar="N", help="jobs (default 3000)"
    )
    drill.add_argument(
        "--duration",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="seconds over which jobs arrive and faults strike (default 30)",
    )
    drill.add_argument(
        "--seed", type=int, default=None, metavar="X", help="repeat a drill's workload and faults"
    )
    drill.add_argument(
        "--workers", type=positive_int, default=2, metavar="N", help="per node (default 2)"
    )
    drill.add_argument(
        "--yes",
        action="store_true",
        help="run even though the database holds jobs outside the drill's queue",
    )
    drill.add_argument(
        "--cleanup",
        action="store_true",
        help="delete the drill's jobs once its report is printed (they are kept to look at)",
    )
    drill.add_argument(
        "--failover",
        type=failover_command,
        default=None,
        metavar="COMMAND",
        help="instead of killing nodes, run this shell command a quarter of the way in to fail "
        "the primary over (e.g. 'pg_autoctl perform failover'); the database URL must list "
        "every server with target_session_attrs=read-write. Checks every node claims on the "
        "new primary within a lease + 5 s of it taking writes",
    )

    add_bench(commands)

    db = commands.add_parser("db", help="the embedded PostgreSQL: its URL, or stop it")
    db_cmds = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    db_cmds.add_parser("url", help="print the database URL in use (starts the embedded one)")
    db_cmds.add_parser("stop", help="stop the embedded PostgreSQL under JOBFLEET_DATA_DIR")
    return parser


def add_bench(commands: Any) -> None:
    from jobfleet.bench import SCENARIOS

    bench = commands.add_parser(
        "bench",
        help="measure throughput, latency, recovery and idle cost on scratch databases",
        description="Runs real supervisors against scratch databases (created on the server in "
        "use and dropped afterwards); progress on stderr, results on stdout.",
    )
    bench.add_argument("--json", action="store_true", help="machine-readable results")
    bench.add_argument(
        "--scenario",
        action="append",
        default=None,
        metavar="NAME",
        help=f"run only these (repeat or comma-separate): {', '.join(SCENARIOS)}; "
        "all but soak by default",
    )
    bench.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="job count of the throughput scenarios (ceiling, drain, nodes, peers)",
    )
    bench.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes per node and per peer (default: the CPU count)",
    )
    bench.add_argument(
        "--duration",
        default=None,
        metavar="DURATION",
        help="how long the soak runs, e.g. 20m, 1h, 600s (default 20m; soak is run only "
        "when named)",
    )
    # Tiny sizes for the test suite: proves every scenario runs, measures nothing.
    bench.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
