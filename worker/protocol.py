"""Framing between the supervisor and its children: length-prefixed pickle over a socketpair.

One frame carries a whole batch (jobs one way, outcomes the other), so the cost of a syscall
and a pickle is paid per batch, not per job.
"""

from __future__ import annotations

import pickle
import socket
import struct
from collections.abc import Sequence
from typing import Any

from jobfleet.completion import success_columns
from jobfleet.jobs import SUCCESS_FINISHED, SUCCESS_JOB_ID, SUCCESS_STARTED, AttemptResult, Success

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024

# Parent -> child
JOBS = "jobs"  # (JOBS, [(id, attempt, type, payload_json, timeout, trace_context), ...])
CANCEL = "cancel"  # (CANCEL, job_id, attempt): stop a job run beside the main thread
# Both ways: the parent's (BYE,) asks a child to leave once its jobs are done; the child's
# (BYE, reason) says it leaves ("drained", or why it recycles itself). Jobs it held but never
# started are released by the parent when it reaps the child.
BYE = "bye"
# Child -> parent
# (DONE, [job id, ...], [run time in seconds, ...], SuccessColumns or None, [AttemptResult of a
# failure, ...], [Success already committed, ...]): the successes' ids and run times, and
# their columns formatted for the write (see `done`); the last are a transactional handler's,
# which its worker recorded in the handler's transaction.
DONE = "done"
# The same for jobs run beside the main thread (async, threaded): not counted in the slot's
# jobs_done, which counts the main thread's jobs, in the order they were handed out.
LANE_DONE = "lane_done"
PROGRESS = "progress"  # (PROGRESS, job_id, attempt, fraction, message)


def done(
    successes: Sequence[Success], failures: list[AttemptResult], committed: list[Success]
) -> tuple[Any, ...]:
    """A DONE message. The successes travel as the supervisor uses them: their ids (to settle
    what the child held), run times (its tally) and the columns its write takes, formatted here
    rather than on the supervisor's hot path."""
    ids = list(map(SUCCESS_JOB_ID, successes))
    seconds = [(s[SUCCESS_FINISHED] - s[SUCCESS_STARTED]) / 1e6 for s in successes]
    columns = success_columns(successes) if successes else None
    return (DONE, ids, seconds, columns, failures, committed)


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    return pickle.loads(body)


def recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    """n bytes from a blocking socket, or None at end of stream."""
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> Any | None:
    header = recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME} byte limit")
    body = recv_exactly(sock, size)
    return None if body is None else decode(body)
