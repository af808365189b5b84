"""What each `jobfleet` command does. Output goes to stdout; errors are raised to main()."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from operator import itemgetter
from typing import Any, BinaryIO

from jobfleet import admin, apikeys
from jobfleet.cli.bulk import cmd_dlq, cmd_jobs_cancel
from jobfleet.cli.flow import cmd_cron, cmd_queues, cmd_types
from jobfleet.cli.render import (
    JOB_COLUMNS,
    NODE_COLUMNS,
    columns,
    dumps,
    job_details,
    listing,
    short,
)
from jobfleet.db import bounded_transaction, connect, database_url, mask_password
from jobfleet.enqueue import enqueue, enqueue_many, many_jobs, one_job
from jobfleet.errors import JobfleetError
from jobfleet.metrics import use_directory
from jobfleet.migrate import check_schema, migrate
from jobfleet.options import MAX_JSON_DEPTH, check_name
from jobfleet.settings import Settings, http_process_count
from jobfleet.supervisor.http_child import HttpChild
from jobfleet.wait import wait_for_terminal

EXIT_FAILED = 1
EXIT_TIMEOUT = 124


API_KEY_COLUMNS = columns(
    ("NAME", itemgetter("name")),
    ("KEY ID", itemgetter("key_id")),
    ("SCOPES", lambda k: ",".join(k["scopes"])),
    ("RATE", lambda k: apikeys.format_rate(k["rate_per_second"])),
    ("CREATED", itemgetter("created_at")),
    ("REVOKED", lambda k: k["revoked_at"] or ""),
)


def cmd_migrate(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        applied = migrate(conn)
    if applied:
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
    else:
        print("schema is up to date")
    return 0


def _pythonpath(value: str | None) -> list[str]:
    """--pythonpath's folders, then the working directory (as `python -m` has it)."""
    folders = [os.path.abspath(d) for d in (value or "").split(os.pathsep) if d]
    for folder in folders:
        if not os.path.isdir(folder):
            raise ValueError(f"--pythonpath {folder!r} is not a folder")
    return [*folders, os.getcwd()]


def cmd_supervisor(args: argparse.Namespace, config: Settings) -> int:
    import asyncio

    from jobfleet.supervisor.node import Node, default_node_name
    from jobfleet.supervisor.supervisor import Supervisor
    from jobfleet.worker.registry import load_handlers

    modules = [m.strip() for m in args.handlers.split(",") if m.strip()]
    handlers = load_handlers(modules, search_first=_pythonpath(args.pythonpath))
    queues = _names("queue", args.queues)
    name = args.node_name or config.node_name or default_node_name()
    source = "--node-name" if args.node_name else "JOBFLEET_NODE_NAME"
    check_name(source, name)
    if "/" in name:
        raise ValueError(f"{source} {name!r} must not contain '/'")
    workers = args.workers or len(os.sched_getaffinity(0)) or 1
    node = Node(name=name, handlers=handlers, queues=queues)
    url = database_url(config)
    # A port in use fails the start before anything is written.
    http = _http_children(args, url, args.http_processes or http_process_count(config))
    with connect(url, config=config) as conn:
        check_schema(conn)
        node.register(conn, workers=workers, stale_after=3 * config.node_heartbeat)
    # Every process of the node writes its metrics here; the HTTP child serves them.
    metrics_dir = use_directory()
    try:
        supervisor = Supervisor(node, config, url, workers=workers, burst=args.burst, http=http)
        return asyncio.run(supervisor.run())
    finally:
        for child in http:
            child.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _http_children(args: argparse.Namespace, url: str, api_processes: int) -> list[HttpChild]:
    """Bind the HTTP ports now, so a port in use fails the start with a clear message. The
    API's processes share its socket; /metrics alone needs one."""
    from jobfleet.http.server import bind

    if args.http_port is not None and args.http_port == args.metrics_port:
        raise ValueError(
            "--http-port and --metrics-port are the same port: /metrics is "
            "served on the API port already; drop --metrics-port"
        )
    children = []
    for role, number, count in (
        ("api", args.http_port, api_processes),
        ("metrics", args.metrics_port, 1),
    ):
        if number is not None:
            sock = bind(args.http_host, number)
            children += [HttpChild(role, sock, url) for _ in range(count)]
    return children


def cmd_api(args: argparse.Namespace, config: Settings) -> int:
    from jobfleet.http.processes import serve_processes
    from jobfleet.http.server import bind, serve

    url = database_url(config)
    # As the API's own connections are (jobfleet.http.app): it may sit behind PgBouncer.
    with (
        connect(url, autocommit=True, config=config, pooler_safe=True) as conn,
        bounded_transaction(conn, config),
    ):
        check_schema(conn)
    sock = bind(args.host, args.port)
    processes = args.processes or http_process_count(config)
    if processes == 1:
        serve(sock, url, config, "api")
    else:
        serve_processes(sock, url, processes)
    return 0


def cmd_apikey(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        if args.apikey_command == "create":
            scopes = apikeys.parse_scopes(args.scopes)
            rate = None if args.rate is None else apikeys.parse_rate(args.rate)
            key = apikeys.create_key(conn, args.name, scopes, rate)
            conn.commit()
            print(
                f"created API key {args.name!r}: scopes {','.join(scopes)}, rate "
                f"{apikeys.format_rate(rate)}. It is shown this once; store it now:"
            )
            print(key)
        elif args.apikey_command == "list":
            keys = apikeys.list_keys(conn)
            print(listing(keys, API_KEY_COLUMNS, as_json=args.json))
        else:
            apikeys.revoke_key(conn, args.name)
            conn.commit()
            print(f"revoked API key {args.name!r}")
    return 0


def _names(option: str, text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [check_name(option, part.strip()) for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"--{option}s names no {option}")
    return names


def cmd_enqueue(args: argparse.Namespace, config: Settings) -> int:
    options = {
        "queue": args.queue,
        "priority": args.priority,
        "delay": args.delay,
        "run_at": args.run_at,
        "max_attempts": args.max_attempts,
        "timeout": args.timeout,
        "backoff": args.backoff,
    }
    if args.from_jsonl is not None:
        for given, flag in (
            (args.idempotency_key, "--idempotency-key"),
            (args.unique_for, "--unique-for"),
        ):
            if given is not None:
                raise ValueError(f"{flag} cannot be used with --from-jsonl")
        payloads = _read_jsonl(args.from_jsonl)
        many_jobs(args.type, payloads, options)  # refused before a database is reached
        with connect(config=config) as conn:
            ids = enqueue_many(conn, args.type, payloads, **options)
        print(len(ids))
        return 0
    payload = _parse_json("--payload", args.payload) if args.payload is not None else None
    # Checked before a database is reached (or the embedded one started for nothing).
    one = {"idempotency_key": args.idempotency_key, "unique_for": args.unique_for}
    one_job(args.type, payload, {**options, **one})
    with connect(config=config) as conn:
        job = enqueue(conn, args.type, payload, **one, **options)
    print(job)
    return 0


def _parse_json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(
            f"{option} nests arrays and objects too deeply to read (at most "
            f"{MAX_JSON_DEPTH} levels are accepted)"
        ) from None


def _read_jsonl(source: str) -> list[Any]:
    """Payloads, one per line; a line that is not UTF-8 is named, not a codec's message."""
    handle: BinaryIO
    try:
        handle = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ValueError(f"--from-jsonl cannot read {source}: {exc.strerror}") from None
    payloads = []
    with handle:
        for number, raw in enumerate(handle, start=1):
            option = f"--from-jsonl line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{option} is not UTF-8 (byte {exc.start + 1} of the line)"
                ) from None
            if line.strip():
                payloads.append(_parse_json(option, line))
    return payloads


def cmd_status(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        report = admin.status(conn)
    if args.json:
        print(dumps(report))
        return 0
    counts = report["counts"]
    print("jobs: " + "  ".join(f"{state}={n}" for state, n in counts.items()))
    if report["nodes"]:
        print(listing(report["nodes"], NODE_COLUMNS, as_json=False))
    else:
        print("nodes: none alive (start one with `jobfleet supervisor`)")
    if report["paused_queues"]:
        print("paused queues (no node claims from them): " + ", ".join(report["paused_queues"]))
    if report["unhandled_types"]:
        print(
            "unhandled job types (queued, no live node has a handler): "
            + ", ".join(report["unhandled_types"])
        )
    return 0


def cmd_jobs(args: argparse.Namespace, config: Settings) -> int:
    if args.jobs_command == "list":
        with connect(config=config) as conn:
            jobs = admin.list_jobs(
                conn,
                state=args.state,
                type=args.type,
                queue=args.queue,
                node=args.node,
                limit=args.limit,
            )
        print(listing(jobs, JOB_COLUMNS, as_json=args.json))
        return 0
    if args.jobs_command == "show":
        with connect(config=config) as conn:
            job = admin.show_job(conn, args.id)
        print(dumps(job) if args.json else job_details(job))
        return 0
    if args.jobs_command == "cancel":
        return cmd_jobs_cancel(args, config)
    return _wait(args, config)


def _wait(args: argparse.Namespace, config: Settings) -> int:
    try:
        state, result, error = wait_for_terminal(args.id, args.timeout)
    except TimeoutError as exc:
        print(f"jobfleet: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    if args.json:
        with connect(config=config) as conn:
            print(dumps(admin.show_job(conn, args.id)))
    elif state == "succeeded":
        print(json.dumps(result, ensure_ascii=False))
    if state != "succeeded":
        last = short(error, 200) if error else "no error recorded"
        print(f"jobfleet: job {args.id} ended {state}: {last}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_cancel(args: argparse.Namespace, config: Settings) -> int:
    with connect(config=config) as conn:
        state = admin.cancel(conn, args.id)
    if state == "cancelled":
        print(f"job {args.id} cancelled")
    else:
        print(f"job {args.id} is running: cancellation requested; its node stops it")
    return 0


def cmd_db(args: argparse.Namespace, config: Settings) -> int:
    if args.db_command == "url":
        print(mask_password(database_url(config)) if config.database_url else database_url(config))
        return 0
    if config.database_url:
        raise JobfleetError("JOBFLEET_DATABASE_URL is set: there is no embedded PostgreSQL to stop")
    from jobfleet.embedded import EmbeddedCluster

    stopped = EmbeddedCluster(config.data_dir).stop()
    print("stopped" if stopped else "not running")
    return 0


def cmd_drill(args: argparse.Namespace, config: Settings) -> int:
    from jobfleet.drill.run import DrillOptions, run_drill

    options = DrillOptions(
        nodes=args.nodes,
        jobs=args.jobs,
        duration=args.duration,
        seed=args.seed,
        workers=args.workers,
        yes=args.yes,
        cleanup=args.cleanup,
        failover=args.failover,
    )
    return run_drill(options, config)


def cmd_bench(args: argparse.Namespace, config: Settings) -> int:
    from jobfleet.bench.runner import run_bench

    return run_bench(args, config)


COMMANDS = {
    "migrate": cmd_migrate,
    "supervisor": cmd_supervisor,
    "enqueue": cmd_enqueue,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "cancel": cmd_cancel,
    "dlq": cmd_dlq,
    "queues": cmd_queues,
    "cron": cmd_cron,
    "types": cmd_types,
    "api": cmd_api,
    "apikey": cmd_apikey,
    "db": cmd_db,
    "drill": cmd_drill,
    "bench": cmd_bench,
}
