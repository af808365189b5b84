"""The drill's workload: a seeded mix of job kinds, spread over the drill's duration so that
every fault lands while nodes hold work."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from jobfleet.enqueue import enqueue_many

QUEUE = "jobfleet-drill"
# Faults cost attempts (a lost lease, a killed child), so every job that should succeed gets
# far more attempts than the faults can take; the always-failing kind gets few so it dies soon.
GENEROUS_ATTEMPTS = 25
FAILING_ATTEMPTS = 3
# Retries come back quickly: the drill measures recovery, not backoff.
BACKOFF = "fixed:0.2"
# At most this many enqueue waves (one delay each) over the duration.
MAX_WAVES = 20


@dataclass(frozen=True)
class Kind:
    name: str
    share: float  # of the jobs
    ends: str  # the terminal state every job of this kind must reach
    payload: Callable[[random.Random], Any]
    # Transactional: writes one drill_charges row through ctx.tx, which must commit exactly
    # when (and only once) the job succeeds.
    charges: bool = False

    @property
    def type(self) -> str:
        return f"drill_{self.name}"


KINDS = (
    Kind("fast", 0.50, "succeeded", lambda r: None),
    Kind("slow", 0.10, "succeeded", lambda r: {"seconds": round(r.uniform(0.05, 0.5), 3)}),
    Kind("cpu", 0.10, "succeeded", lambda r: {"ms": r.randint(5, 40)}),
    Kind("flaky", 0.14, "succeeded", lambda r: {"fail_times": r.randint(1, 2)}),
    Kind("fail", 0.05, "dead", lambda r: None),
    # Few: a node that sees more worker deaths than it has workers within 10 s slows its
    # restarts down (crash-loop protection), and the drill kills children on top of these.
    Kind("crash_once", 0.01, "succeeded", lambda r: None),
    # Transactional: each writes its row, sleeps inside its transaction (so worker kills and
    # node faults land between the write and the commit), and some decline once after writing
    # (the write must roll back with the failure).
    Kind("charge", 0.09, "succeeded", lambda r: _charge(r), charges=True),
    Kind("charge_declined", 0.01, "dead", lambda r: {"decline_times": 99}, charges=True),
)


def _charge(rnd: random.Random) -> dict[str, float]:
    return {"seconds": round(rnd.uniform(0.0, 0.3), 3), "decline_times": rnd.choice((0, 0, 1))}


def counts(jobs: int) -> dict[str, int]:
    """How many jobs of each kind: the shares, with at least one of each, summing to `jobs`."""
    sizes = {k.name: max(1, int(jobs * k.share)) for k in KINDS}
    sizes["fast"] += jobs - sum(sizes.values())
    if sizes["fast"] < 1:
        raise ValueError(f"--jobs {jobs}: the drill needs at least {len(KINDS)} jobs")
    return sizes


def enqueue_workload(
    conn: psycopg.Connection[Any], jobs: int, duration: float, rnd: random.Random
) -> dict[str, list[int]]:
    """Enqueue the mix in waves over `duration` (run_at spread out); return the ids by kind."""
    waves = max(1, min(MAX_WAVES, int(duration)))
    ids: dict[str, list[int]] = {}
    with conn.transaction():
        for kind in KINDS:
            by_wave: dict[int, list[Any]] = {}
            for _ in range(counts(jobs)[kind.name]):
                by_wave.setdefault(rnd.randrange(waves), []).append(kind.payload(rnd))
            ids[kind.name] = []
            for wave, payloads in sorted(by_wave.items()):
                ids[kind.name] += enqueue_many(
                    conn,
                    kind.type,
                    payloads,
                    queue=QUEUE,
                    delay=wave * duration / waves,
                    max_attempts=FAILING_ATTEMPTS if kind.ends == "dead" else GENEROUS_ATTEMPTS,
                    backoff=BACKOFF,
                )
    return ids
