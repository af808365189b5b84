"""What every scenario is given: where to run, how big, how many workers, and the progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobfleet.bench.progress import Progress


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does. `quick` is the test suite's: seconds in all."""

    ceiling_jobs: int = 100_000
    drain_jobs: tuple[int, ...] = (20_000, 100_000)
    million_jobs: int = 1_000_000
    # The ceiling and each drain run this many times on a fresh fill; the median is reported
    # (a run of a second or two on a shared 2-core VM varies by 10-20 %).
    rounds: int = 3
    # The biggest drain's rounds, each after a ceiling round of its own: its ratios to the
    # ceiling are targets, and over 3 rounds they moved by up to a sixth between runs.
    paired_rounds: int = 5
    cpu_jobs: int = 400
    cpu_ms: int = 50
    # `io`: jobs that only wait, many at once per worker (issue 18's sizes: 5 s and 10 s ideal
    # on 2 workers at the handlers' concurrency of 100 and 20).
    io_async_jobs: int = 5_000
    io_thread_jobs: int = 2_000
    io_seconds: float = 0.2
    # `transactional`: this many no-op jobs of each path (plain, transactional), per round.
    transactional_jobs: int = 10_000
    enqueue_single: int = 2_000
    enqueue_bulk: int = 100_000
    http_single: int = 1_000
    http_batch: int = 1_000  # jobs per POST /jobs:batch
    # POST /jobs at 1, 8 and 32 clients: this many requests in all at each (a second or more
    # of the fastest, so a pool still warming or one slow commit does not make the figure).
    http_concurrent: int = 4_000
    latency_idle_samples: int = 1_000  # back to back, as Graphile Worker's own test takes them
    latency_paused_samples: int = 150
    latency_idle_gap: float = 0.03  # seconds before each paused sample: the CPUs go idle too
    latency_load_rate: int = 10_000  # jobs/s offered while measuring under load
    latency_load_seconds: float = 3.0
    backlogs: tuple[int, ...] = (10_000, 1_000_000)
    backlog_drain: int = 20_000
    nodes: tuple[int, ...] = (1, 2, 4, 8)
    worker_counts: tuple[int, ...] = (1, 2, 4)
    scale_jobs: int = 100_000
    limits_jobs: int = 100_000
    # `history`: finished jobs to prune, and the drain measured beside the pruner.
    history_jobs: int = 10_000_000
    history_drain: int = 100_000
    child_kills: int = 5
    node_kills: int = 2
    node_lease_seconds: float = 2.0
    idle_seconds: float = 10.0
    idle_settle_seconds: float = 12.0  # see idle.py
    idle_nodes: int = 50  # the idle fleet: what this many waiting nodes cost the database
    # `soak` (only when named; --duration sets soak_seconds): see soak.py.
    soak_seconds: float = 1200.0
    soak_rate: float = 3000.0  # jobs/s offered
    soak_sample_seconds: float = 60.0
    soak_retention_seconds: float = 120.0
    peer_jobs: int = 20_000


QUICK = Sizes(
    ceiling_jobs=2_000,
    drain_jobs=(500, 2_000),
    million_jobs=5_000,
    rounds=2,
    paired_rounds=3,
    cpu_jobs=10,
    cpu_ms=10,
    io_async_jobs=400,
    io_thread_jobs=80,
    io_seconds=0.05,
    transactional_jobs=300,
    enqueue_single=50,
    enqueue_bulk=2_000,
    http_single=20,
    http_batch=100,
    http_concurrent=64,
    latency_idle_samples=8,
    latency_paused_samples=4,
    latency_idle_gap=0.01,
    latency_load_rate=1_000,
    latency_load_seconds=0.5,
    backlogs=(100, 5_000),
    backlog_drain=500,
    nodes=(1, 2),
    worker_counts=(1, 2),
    scale_jobs=1_000,
    limits_jobs=1_000,
    history_jobs=20_000,
    history_drain=1_000,
    child_kills=1,
    node_kills=1,
    node_lease_seconds=1.0,
    idle_seconds=1.0,
    idle_settle_seconds=0.5,
    idle_nodes=3,
    soak_seconds=10.0,
    soak_rate=300.0,
    soak_sample_seconds=2.0,
    soak_retention_seconds=5.0,
    peer_jobs=200,
)


@dataclass
class Context:
    server: str  # a database on the server that scratch databases are created on
    workers: int  # worker processes per node (and per peer)
    sizes: Sizes
    progress: Progress
    log_dir: Path

    def step(self, label: str) -> None:
        self.progress.step(label)
