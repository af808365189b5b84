"""Putting jobs in the queue, inside the caller's own transaction.

Nothing here commits, rolls back or opens a connection: a job enqueued with a business change
commits with it or vanishes with it. What is checked and built is the same for a blocking
connection (here) and an asyncio one (jobfleet.aio): the pure steps below serve both.

Every statement run on the caller's connection passes `prepare=False`, whatever its
`prepare_threshold`: behind a transaction-mode pooler (PgBouncer) the next transaction may run
on another server connection, where a statement psycopg prepared on the first one is unknown,
or where another client's `_pg3_0` already exists (DuplicatePreparedStatement). What that
would cost is planning each statement again; for the one that matters most, a single job's
INSERT, it costs nothing: the INSERT is inside a PL/pgSQL function (jobfleet_enqueue), whose
plans the server keeps per server connection whatever pooler is in between, and the statement
sent is a bare call of it (0.38 ms a call instead of 0.61 ms, measured; sql/queries/enqueue.sql).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg

from jobfleet.db import require_sync
from jobfleet.errors import JobfleetError
from jobfleet.limit_keys import payload_key
from jobfleet.options import (
    EnqueueOptions,
    OptionError,
    check_name,
    check_options,
    encode_json,
)
from jobfleet.queries import sql
from jobfleet.settings import settings
from jobfleet.tracing import current_trace_context, job_trace_context

COPY_BLOCK_ROWS = 10_000


def enqueue(conn: psycopg.Connection[Any], type: str, payload: Any = None, **options: Any) -> int:
    """Add one job; return its id (the existing job's id for a repeated idempotency key).

    Options: queue, priority, delay (seconds) or run_at (ISO 8601 / datetime), max_attempts,
    timeout (seconds), backoff ('exponential' | 'linear' | 'fixed', optionally ':SECONDS'),
    idempotency_key, unique_for (seconds: a job of the same type and payload enqueued within
    them returns the first one's id, whatever its state). Bad options raise ValueError naming
    the option, before anything is written.
    """
    return enqueue_job(conn, type, payload, **options)[0]


def enqueue_job(
    conn: psycopg.Connection[Any],
    type: str,
    payload: Any = None,
    *,
    payload_limit: int | None = None,
    caller_trace: Mapping[str, str] | None = None,
    **options: Any,
) -> tuple[int, bool]:
    """`enqueue`, also saying whether the job is new (False: its idempotency key was taken).
    `payload_limit` overrides JOBFLEET_MAX_PAYLOAD_BYTES (a server's own settings);
    `caller_trace` is a remote caller's W3C trace context (an HTTP request's headers), stored
    when this process has no span of its own active (jobfleet.tracing.job_trace_context)."""
    require_sync(conn, "enqueue")
    params = one_job(type, payload, options, payload_limit, caller_trace)
    add, find, find_params, holder = add_and_find(params)
    added = added_id(conn.execute(sql(add), params, prepare=False).fetchone())
    if added is not None:
        return added, True
    found = conn.execute(sql(find), find_params, prepare=False).fetchone()
    return existing_job(found, holder), False


def enqueue_many(
    conn: psycopg.Connection[Any], type: str, payloads: Iterable[Any], **options: Any
) -> list[int]:
    """Add one job per payload with COPY; return their ids in payload order.

    Takes enqueue's options except idempotency_key, applied to every job. Every payload is
    checked before anything is written.
    """
    require_sync(conn, "enqueue_many")
    payloads = list(payloads)
    checked, bodies = many_jobs(type, payloads, options)
    if not bodies:
        return []
    defaults = conn.execute(sql("type_defaults"), {"type": type}, prepare=False).fetchone()
    now = conn.execute(sql("db_now"), prepare=False).fetchone() if checked.run_at is None else None
    row = conn.execute(sql("reserve_job_ids"), {"n": len(bodies)}, prepare=False).fetchone()
    ids: list[int] = row[0] if row else []
    values = row_values(checked, defaults, now[0] if now else None, current_trace_context())
    keys = copy_keys(defaults, payloads)
    with conn.cursor() as cur, cur.copy(sql("copy_keyed_jobs" if keys else "copy_jobs")) as copy:
        for block in copy_blocks(type, values, ids, bodies, keys):
            copy.write(block)
    if left := keys_left(ids, keys):
        conn.execute(sql("key_copied_jobs"), {"type": type, "ids": left}, prepare=False)
    return ids


# -- the pure steps (jobfleet.aio takes them too) --------------------------------------------


def one_job(
    type: str,
    payload: Any,
    options: dict[str, Any],
    payload_limit: int | None = None,
    caller_trace: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The checked parameters of the `enqueue` statement; ValueError naming what is wrong.
    The caller's active trace, if any, goes with the job (jobfleet.tracing)."""
    check_name("type", type)
    checked = check_options(**options)
    body = encode_json("payload", payload, payload_limit or settings().max_payload_bytes)
    return {
        "type": type,
        "payload": body,
        **checked.as_params(),
        "trace_context": job_trace_context(caller_trace),
    }


def add_and_find(params: dict[str, Any]) -> tuple[str, str, dict[str, Any], str]:
    """How one job is added: the statement that adds it, the one that finds the job holding
    its place when it adds none (with its parameters), and what holds that place, in words.
    An idempotency key names its job for good, so it decides alone; else `unique_for` makes
    the type and payload a key for that many seconds."""
    if params["unique_for"] is not None and params["idempotency_key"] is None:
        same = {"type": params["type"], "payload": params["payload"]}
        return "enqueue_unique", "unique_job_by_key", same, "a job of the same type and payload"
    key = params["idempotency_key"]
    return "enqueue", "job_id_by_idempotency_key", {"key": key}, f"idempotency key {key!r}"


def added_id(row: Any) -> int | None:
    """The new job's id from its adding statement's row; None: it added none (`enqueue`
    returns a row holding NULL, `enqueue_unique` no row)."""
    return None if row is None or row[0] is None else int(row[0])


def existing_job(row: Any, holder: str) -> int:
    """The id of the job that holds the new job's place (`holder` says what: an idempotency
    key, or a unique job), from its lookup's row."""
    if row is None:  # the holder is not visible to this transaction's snapshot
        raise JobfleetError(
            f"{holder} is taken by a job this transaction cannot see "
            "(REPEATABLE READ or SERIALIZABLE snapshot); retry the transaction"
        )
    return int(row[0])


def many_jobs(
    type: str, payloads: Iterable[Any], options: dict[str, Any]
) -> tuple[EnqueueOptions, list[str]]:
    """The checked options and every payload's JSON, before anything is written."""
    check_name("type", type)
    for one_at_a_time in ("idempotency_key", "unique_for"):
        if options.get(one_at_a_time) is not None:
            raise OptionError(
                one_at_a_time,
                f"{one_at_a_time} is not supported by enqueue_many: use enqueue per job",
            )
    checked = check_options(**options)
    limit = settings().max_payload_bytes
    bodies = []
    for index, payload in enumerate(payloads):
        try:
            bodies.append(encode_json("payload", payload, limit))
        except ValueError as exc:
            raise ValueError(f"payload #{index + 1}: {exc}") from None
    return checked, bodies


def copy_keys(defaults: Any, payloads: list[Any]) -> list[str | None] | None:
    """The jobs' keys when the type has a limit key (its `type_defaults` row says which
    field), written by COPY; None where only the database can tell (keys_left)."""
    if defaults is None or defaults[6] is None:
        return None
    return [payload_key(p, defaults[6]) for p in payloads]


def keys_left(ids: list[int], keys: list[str | None] | None) -> list[int]:
    """The jobs whose key the database computes after the COPY (key_copied_jobs)."""
    return [i for i, k in zip(ids, keys, strict=True) if k is None] if keys else []


def row_values(
    checked: EnqueueOptions, defaults: Any, now: datetime | None, trace_context: str | None
) -> tuple[Any, ...]:
    """The columns COPY writes for every row, with the type's defaults (its `type_defaults`
    row, or None) filled in; `now` is the database's clock, for a delay; `trace_context` the
    caller's (jobfleet.tracing), the same for every job of the batch."""
    t_queue, t_priority, t_max, t_timeout, t_backoff, t_backoff_s = (defaults or (None,) * 6)[:6]
    run_at = checked.run_at
    if run_at is None:
        assert now is not None
        run_at = now + timedelta(seconds=checked.delay or 0)
    return (
        _first(checked.queue, t_queue, "default"),
        _first(checked.priority, t_priority, 0),
        run_at,
        _first(checked.max_attempts, t_max, 5),
        _first(checked.timeout, t_timeout),
        _first(checked.backoff, t_backoff),
        _first(checked.backoff_seconds, t_backoff_s),
        trace_context,
    )


def copy_blocks(
    type: str,
    values: tuple[Any, ...],
    ids: list[int],
    bodies: list[str],
    keys: list[str | None] | None = None,
) -> Iterator[str]:
    """The rows in COPY's text format, in blocks: one write per block, not per row. Every
    column but the id, the payload (and the key, for copy_keyed_jobs) is the same on each
    row."""
    middle = "\t" + "\t".join(_copy_field(v) for v in (type, *values)) + "\t"
    if keys is None:
        lines = [f"{i}{middle}{_copy_text(b)}\n" for i, b in zip(ids, bodies, strict=True)]
    else:
        lines = [
            f"{i}{middle}{_copy_text(b)}\t{_copy_key(k)}\n"
            for i, b, k in zip(ids, bodies, keys, strict=True)
        ]
    for start in range(0, len(lines), COPY_BLOCK_ROWS):
        yield "".join(lines[start : start + COPY_BLOCK_ROWS])


def _copy_text(text: str) -> str:
    """JSON text in COPY's text format: JSON escapes every control character itself, so only
    its backslashes need doubling."""
    return text.replace("\\", "\\\\")


def _copy_key(key: str | None) -> str:
    """A job's key in COPY's text format: any text a payload's string holds."""
    if key is None:
        return "\\N"
    return key.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_field(value: Any) -> str:
    """A value in COPY's text format. Our values hold no tab or newline (names are checked,
    numbers are numbers, a trace context is printable ASCII in JSON), so only NULL and a
    trace context's backslashes (JSON's escape of a quote in its tracestate) need spelling
    out."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return _copy_text(value)
    return str(value)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
