"""Human-readable output: aligned tables and short values."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any


def short(value: Any, width: int = 60) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.strip().splitlines()[-1] if text.strip() else text
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, whole: bool = False) -> str:
    """Aligned columns; long cells shortened to their last line's first 60 characters, unless
    `whole` (the bench's figures are never cut)."""
    cell = str if whole else short
    cells = [[str(h) for h in headers]] + [[cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


# A listing's columns: a header and how a row (a dict from admin.py) gives its cell.
Column = tuple[str, Callable[[dict[str, Any]], Any]]


def columns(*spec: str | Column) -> tuple[Column, ...]:
    """Columns from headers that name the row's field, or (header, cell) pairs."""
    return tuple((c, itemgetter(c)) if isinstance(c, str) else c for c in spec)


def listing(rows: Sequence[dict[str, Any]], shown: Sequence[Column], *, as_json: bool) -> str:
    """The rows as JSON (every field), or as a table of the shown columns."""
    if as_json:
        return dumps(rows)
    return table([h for h, _ in shown], [[cell(row) for _, cell in shown] for row in rows])


def _joined(field: str, empty: str = "") -> Callable[[dict[str, Any]], str]:
    return lambda row: ",".join(row[field]) if row[field] else empty


JOB_COLUMNS = columns(
    "id",
    "type",
    "queue",
    "state",
    ("pri", itemgetter("priority")),
    ("attempt", lambda j: f"{j['attempt']}/{j['max_attempts']}"),
    "node",
    "run_at",
    ("error", lambda j: short(j["error"], 50)),
)
DEAD_JOB_COLUMNS = columns(
    "id",
    "type",
    "queue",
    ("attempts", itemgetter("attempt")),
    ("died", itemgetter("finished_at")),
    ("last error", lambda j: short(j["last_error"], 60)),
)
NODE_COLUMNS = columns(
    ("node", itemgetter("name")),
    ("host", itemgetter("hostname")),
    "pid",
    "workers",
    "busy",
    "running",
    ("queues", _joined("queues", "*")),
    ("last heartbeat", itemgetter("last_heartbeat")),
)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def job_details(job: dict[str, Any]) -> str:
    lines = [f"job {job['id']}  {job['type']}  queue={job['queue']}  state={job['state']}"]
    for key in (
        "priority",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "timeout",
        "idempotency_key",
        "node",
    ):
        if job.get(key) is not None:
            lines.append(f"  {key}: {job[key]}")
    lines.append(f"  payload: {json.dumps(job['payload'], default=str)}")
    if job.get("progress") is not None:
        lines.append(f"  progress: {json.dumps(job['progress'])}")
    if job["state"] == "succeeded":
        lines.append(f"  result: {json.dumps(job['result'], default=str)}")
    if job.get("error"):
        lines.append("  error:")
        lines.extend("    " + ln for ln in str(job["error"]).splitlines())
    if job["attempts"]:
        lines.append("  attempts:")
        rows = [
            (
                a["attempt"],
                a["outcome"],
                a["node"],
                a["pid"],
                a["started_at"],
                a["finished_at"],
                a["error"],
            )
            for a in job["attempts"]
        ]
        body = table(["#", "outcome", "node", "pid", "started", "finished", "error"], rows)
        lines.extend("    " + ln for ln in body.splitlines())
    return "\n".join(lines)
