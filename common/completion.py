"""The fenced completion of successful attempts, as one statement: the supervisor writes its
children's successes in batches with it, and a transactional handler's worker writes its own
in the handler's transaction (worker/transactional.py). Only the attempt that still holds its
job (same attempt, still running, held by `holder`: the claim's locked_by) can complete it;
a NULL holder leaves the holder unchecked (tests and tools that claim by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobfleet.jobs import Success
from jobfleet.queries import sql

Statement = tuple[str, dict[str, Any]]


def success_statement(
    node: str, successes: Sequence[Success], *, holder: str | None = None
) -> Statement:
    ids, attempts, results, pids, started, finished = zip(*successes, strict=True)
    return sql("complete_batch"), {
        "node": node,
        "holder": holder,
        "ids": ",".join(map(str, ids)),
        "attempts": ",".join(map(str, attempts)),
        "results": "[" + ",".join(results) + "]",
        "pids": ",".join(map(str, pids)).replace("None", ""),  # no pid: an empty field
        "started": ",".join(map(str, started)),
        "finished": ",".join(map(str, finished)),
    }
