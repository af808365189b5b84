"""When the outbox is written (lanes.py asks): at once, after a share of the jobs' run time,
together with the next few jobs' outcomes while jobs come back to back one at a time, and
whether a lane with nothing else to do writes beside a write in flight. Pure functions of
what the node knows; tests/unit/test_write_timing.py holds them to it.
"""

from __future__ import annotations

# How long successes may wait to share a write: this share of a job's run time, at most the
# maximum (see write_after).
WRITE_LINGER_SHARE, WRITE_LINGER_MAX_SECONDS = 0.5, 0.05
# Jobs come back to back when news of the next one reaches a node that runs nothing within
# this long of its latest outcome (see back_to_back); while they do, successes wait up to
# BACK_TO_BACK_LINGER_SECONDS to share a write (see write_after). At 10 ms a write met the
# next enqueue's commit about once in seven jobs (a job every 1.4 ms); at 25 ms, once in 18:
# enqueue -> start p50 1.271 -> 1.220, 1.271 -> 1.203, 1.279 -> 1.247 and 1.352 -> 1.284 ms
# (3,000 jobs each, builds alternating, bench latency's method). 50 ms, the longest any
# success waits, gained little more (1.284 -> 1.271).
BACK_TO_BACK_SECONDS = 0.005
BACK_TO_BACK_LINGER_SECONDS = 0.025
# A lane with nothing else to do writes beside a write in flight when this many outcomes wait
# (the first once the queue has run dry, the second while claims go on). The write in flight
# took what waited when it began; what came since waited for it to end: in a 100k drain the
# outcomes came 10-15k a write, 150 ms behind the jobs, and the last of them were written one
# write after the other after the last job ended, on one of PostgreSQL's processes while the
# other idled (0.15-0.25 s from the last job's end to the node's exit). Written beside, that
# was 0.06-0.1 s, and the drain's start to exit 1.60 s against 1.73 (median of 7, 2 cores);
# beside every claim, at 1000, the jobs themselves ran slower, the claims waiting on the
# writes. Not fewer once the queue is dry and nothing runs: one job at a time, the queue is
# dry after every claim, and writes beside each other met the next enqueue's commit (idle
# p50 1.28 ms against 1.12, bench latency). Not on a node with limited types: two writes that
# each count finished jobs of several types could lock the counters' rows in opposite orders.
WRITE_BESIDE_MIN, WRITE_BESIDE_BUSY_MIN = 1000, 5000


def write_after(
    now: float,
    since: float,
    latest: float,
    *,
    only_successes: bool,
    accepting: bool,
    running: bool,
    mean_seconds: float | None,
    news_at: float,
    back_to_back: bool,
) -> float:
    """Seconds until the outcomes waiting are due to be written; 0: now. `since`: when the
    oldest of them arrived, `latest`: when the newest did; `news_at`: when work was last
    announced; `back_to_back`: whether that news came back to back (see back_to_back).

    Successes of jobs that take a while wait a little (a share of a job's run time, at most
    WRITE_LINGER_MAX_SECONDS) so that those finishing close together share one statement and
    one commit: 50 ms jobs otherwise cost a write each. Short jobs' outcomes go at once (their
    batches are big anyway), and so does everything else: failures, releases, progress, the
    last outcomes of a node with nothing else running, and anything once the node is
    draining (not `accepting`).

    Jobs that come back to back, one at a time (each enqueued about when the last one
    started: Graphile Worker's latency test, or an application's steady trickle), are the
    exception: each job's write committed as the next job's enqueue did, and the enqueue's
    WAL flush queued behind the write's (issue 17: the enqueue call took 1.1 ms back to back,
    0.4 ms alone, and enqueue to start was 1.8 ms). While the news keeps coming, successes
    wait up to BACK_TO_BACK_LINGER_SECONDS, so that one flush in about twenty jobs' time
    meets an enqueue instead of every one; once no news has followed the latest outcome for
    BACK_TO_BACK_SECONDS, nothing is gained by waiting. A job is still reported finished only
    once its outcome is committed and flushed: only later."""
    if not only_successes or not accepting:
        return 0.0
    if back_to_back and now - news_at <= BACK_TO_BACK_LINGER_SECONDS:
        due = since + BACK_TO_BACK_LINGER_SECONDS
        if news_at < latest:  # no news since the latest outcome (yet)
            due = min(due, latest + BACK_TO_BACK_SECONDS)
        return max(0.0, due - now)
    if not running:
        return 0.0
    linger = min(WRITE_LINGER_MAX_SECONDS, WRITE_LINGER_SHARE * (mean_seconds or 0))
    return max(0.0, since + linger - now)


def writes_beside(*, writing: int, waiting: int, queue_dry: bool, limited: bool) -> bool:
    """Whether a lane with nothing else to do writes the outcomes `waiting` while `writing`
    writes are in flight: enough of them wait (fewer once the queue has run dry), and the
    node has no limited types (or does not know yet). See WRITE_BESIDE_MIN."""
    least = WRITE_BESIDE_MIN if queue_dry else WRITE_BESIDE_BUSY_MIN
    return writing > 0 and waiting >= least and not limited


def back_to_back(news_at: float, latest: float | None, running: bool) -> bool:
    """Whether news of work (at `news_at`) came back to back: to a node that runs nothing,
    within BACK_TO_BACK_SECONDS of its latest outcome (at `latest`; None: none yet)."""
    if running or latest is None:
        return False
    return 0.0 <= news_at - latest <= BACK_TO_BACK_SECONDS
