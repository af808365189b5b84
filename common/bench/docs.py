"""BENCHMARKS.md and its plots from a `jobfleet bench --json` result (what `make bench` runs):

    python -m jobfleet.bench.docs docs/bench/results.json [BENCHMARKS.md]

A soak's result (`jobfleet bench --json --scenario soak > docs/bench/soak-run.json`, then this
on it) adds the soak's section beside the last full run's results.json, and is kept through
later runs (soak_docs.py).

Everything above the notes marker is regenerated; the notes below it are kept. Plots need
matplotlib (the [bench] extra); without it the tables are still written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from jobfleet.bench import report, soak_docs

NOTES_MARKER = "<!-- notes below are kept by `make bench` -->"
PLOTS = {
    "scaling": "throughput against workers (one node) and nodes, beside the raw ceiling",
    "latency_cdf": "enqueue -> start and -> finish, idle, after a pause and under load",
    "backlog": "throughput draining off the top of a small and a huge backlog",
    "peers": "no-op throughput, jobfleet and its peers",
}

METHOD = """\
Every scenario runs against a scratch database of its own, created on the server in use (the
embedded PostgreSQL unless `JOBFLEET_DATABASE_URL` is set), migrated, and dropped afterwards.
Supervisors are real `jobfleet supervisor` processes, each in its own process group. Queues are
filled with plain COPY, as a user's bulk enqueue does, and the timed part starts right after,
as the user's supervisors would: no ANALYZE, no CHECKPOINT (the ceiling and the biggest drain
are also run on analysed fills, reported beside). Every job shares one run_at, so pickup is
by id. Server settings are as found (see Machine).
"""
# (scenario, what runs, what is reported)
METHOD_ROWS = [
    (
        "ceiling",
        "2 plain processes run the fleet's own `claim` and fenced `complete_batch` "
        "(sql/queries/processing.sql) back to back, batch 500, as the supervisor runs them; "
        "no supervisor; 3 rounds, each on a never-analysed fill of its own (and 3 analysed)",
        "jobs/s from the drainers' start to their end, the median round",
    ),
    (
        "drain",
        "`jobfleet supervisor --burst` draining N no-op jobs; 3 rounds per N, each on a "
        "never-analysed fill of its own (the biggest N also on 3 analysed fills); the "
        "biggest N on fresh fills 5 rounds, each after a ceiling round of its own",
        "*steady*: first job started to last finished (the workers' clocks); "
        "*start-to-exit*: process start to exit; the median round of each. The drain's "
        "ratios to the ceiling are to its own ceiling rounds' median (as `nodes` does): a "
        "load that comes and goes on a shared machine falls on both",
    ),
    (
        "million",
        "`jobfleet supervisor --burst` draining 1M no-op jobs right after their COPY, once, "
        "after a round of the raw ceiling on a fresh fill of its own of 1M",
        "steady and start-to-exit, as for drain; start-to-exit over that ceiling round",
    ),
    (
        "cpu",
        "400 `cpu` jobs of 50 ms, `--burst`",
        "steady span / ideal, ideal = total CPU work / workers (start-to-exit too)",
    ),
    (
        "io",
        "I/O-bound jobs with `--burst` on the default workers: 5,000 async jobs that "
        "`await asyncio.sleep(0.2)` (`concurrency=100`), then 2,000 plain ones that "
        "`time.sleep(0.2)` on threads (`concurrency=20`); beside each, the peers on the same "
        "jobs, worker processes and concurrency per process: procrastinate and pgqueuer with "
        "async tasks, Celery with `--pool threads` (a worker process each)",
        "start to exit, jobs/s, and its ratio to the ideal: jobs x 0.2 s / (workers x concurrency)",
    ),
    (
        "transactional",
        "10k no-op jobs of a plain type and 10k of a transactional one (`transactional=True`, "
        "writing nothing through `ctx.tx`) in one fill, drained by one node with `--burst`; "
        "the types run one after the other (pickup by id), which first alternating; 3 rounds",
        "each type's steady jobs/s (its first start to its last finish) and their ratio, "
        "the median round by ratio",
    ),
    (
        "enqueue",
        "`jobfleet.enqueue`, one job per transaction; `jobfleet.enqueue_many`; a raw COPY of "
        "the same rows pre-formatted in 10k-row writes (best of 2 each); HTTP when the API "
        "exists",
        "jobs/s",
    ),
    (
        "latency",
        "idle: 1,000 jobs one at a time, back to back (the next enqueued once the last "
        "started, as Graphile Worker's latency test does), on a node that LISTENs in between; "
        "after a pause: 150 more, 30 ms apart (the CPUs idle too); load: 10k jobs/s offered "
        "for 3 s in 10 ms batches; beside them, where node is found, Graphile Worker by its "
        "own latencyTest method, the same samples",
        "idle: from the start of the `enqueue` call to the handler's first line (it sends the "
        "time over UDP) and to `finished_at`; load: `started_at - created_at` and "
        "`finished_at - created_at`; nearest-rank percentiles; idle and after a pause, the "
        "median of each step too: the `enqueue` call; from its return to the worker starting "
        "the job (NOTIFY, claim, hand-off: the job's `started_at`, the worker's clock); from "
        "there to the handler's first line",
    ),
    (
        "backlog",
        "a node drains the top 20k jobs while 10k or 1M more stay queued beneath them",
        "steady jobs/s of the top 20k",
    ),
    (
        "nodes",
        "1, 2, 4, 8 nodes on one database (workers // nodes workers each, at least 1, so the "
        "worker total stays near the cores), then 1 node with 1, 2, 4 workers; 100k no-op "
        "jobs each, on a never-analysed fill of its own, filled once every node is up and "
        "idle (the COPY's NOTIFY wakes them together); the raw ceiling of the same job count "
        "in the same run",
        "steady jobs/s, as a ratio to one node and to that ceiling; connections a node "
        "(pg_stat_activity, application_name `jobfleet`, the most seen during the drain)",
    ),
    (
        "limits",
        "`jobfleet supervisor --burst` draining 100k no-op jobs, without limits, with "
        "`max_running` 1,000,000 and `rate` 1,000,000,000/s set on the type (never reached, "
        "always checked and counted), and with the same limits per key of `limit_key` over "
        "1,000 customers (claimed in turns, counted per key; filled by enqueue_many); 3 rounds "
        "each, in turn, each on a never-analysed fill of its own",
        "steady and start-to-exit jobs/s, the median round of each; limited / unlimited, "
        "keyed / unlimited",
    ),
    (
        "history",
        "10M finished jobs (a month old, one in ten with a failed attempt row), vacuumed; "
        "`jobfleet supervisor --burst` draining 100k no-op jobs over them in alternating "
        "rounds: nothing pruning; the node's own leader pruning (retention a day, 0.1 s "
        "slices with 0.9 s pauses between them); the pruner flat out beside it on its own "
        "connection "
        "(windows of 1,000 jobs, no pause); 3 rounds each",
        "steady jobs/s of each drain (median round) and their ratios to the first; jobs "
        "deleted per second flat out and the longest pruning statement (each is its own "
        "transaction: the longest any of its row locks lives)",
    ),
    (
        "recovery",
        "kill -9 of the worker running a long job (5 times); kill -9 of a node's process "
        "group while another node idles (lease 2 s, reaper every 1 s)",
        "kill to the job's next claim (`started_at`), median",
    ),
    (
        "idle",
        "a node with nothing to do, 10 s, from 12 s after its start; then 50 idle nodes of "
        "1 worker on one database, the same way",
        "CPU of the supervisor and its workers (/proc); committed transactions/s "
        "(pg_stat_database, which publishes idle sessions' counts up to 10 s late)",
    ),
    (
        "peers",
        "procrastinate, pgqueuer (asyncpg), Celery (Redis on loopback), Graphile Worker "
        "(Node), DBOS, Chancy and Oban for Python (on a Python 3.12+ venv of its own): the "
        "same no-op job count and worker processes, each in a scratch database of its own "
        "with the settings its docs give for short jobs; a peer that cannot run here says why",
        "start of the worker processes to the last job run, like jobfleet's start-to-exit; "
        "jobfleet's rate over each peer's",
    ),
]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    target = Path(argv[1]) if len(argv) > 1 else Path("BENCHMARKS.md")
    plots_dir = Path(argv[0]).parent
    if set(results["scenarios"]) == {"soak"}:  # a soak alone: beside the last full run
        soak_docs.kept(results, plots_dir)
        full = plots_dir / "results.json"
        if full.exists():
            results = json.loads(full.read_text())
    made = plots(results, plots_dir)
    notes = ""
    if target.exists() and NOTES_MARKER in target.read_text():
        notes = target.read_text().split(NOTES_MARKER, 1)[1].strip()
    text = markdown(results, made, plots_dir, target.parent, notes)
    soak = soak_docs.kept(results, plots_dir)
    if soak is not None:
        drawn = importlib.util.find_spec("matplotlib") is not None and soak_docs.draw(
            soak, plots_dir / soak_docs.PLOT
        )
        rel = Path(os.path.relpath(plots_dir / soak_docs.PLOT, target.parent)).as_posix()
        soak_lines = "\n".join(soak_docs.section(soak, rel if drawn else None))
        text = text.replace(NOTES_MARKER, soak_lines + "\n" + NOTES_MARKER, 1)
    target.write_text(text)
    print(f"wrote {target} and {len(made)} plot(s) in {plots_dir}")
    return 0


def markdown(
    results: dict[str, Any], made: list[str], plots_dir: Path, root: Path, notes: str
) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `make bench` (which installs the `[bench]` extra and redis-server, "
        "runs `jobfleet bench --json` into `docs/bench/results.json` and rewrites this file "
        "above the notes). Run one scenario with `jobfleet bench --scenario NAME`.",
        "",
        "## Machine",
        "",
        f"- {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB; {m['platform']}",
        f"- PostgreSQL {m['postgres_version']}: fsync {m['fsync']}, synchronous_commit "
        f"{m['synchronous_commit']}, shared_buffers {m['shared_buffers']}",
        f"- Python {m['python']}; {results['workers']} workers per node; the whole run took "
        f"{results['seconds']:.0f} s",
        "",
        "## Method",
        "",
        METHOD,
        md_table(["scenario", "what runs", "what is reported"], METHOD_ROWS),
        "",
        "## Results",
        "",
        md_table(["scenario", "measured", "result"], report.rows(results)),
        "",
        "## Ratios and targets",
        "",
        md_table(["ratio", "value", "target", "verdict"], report.ratio_rows(results)),
        "",
    ]
    if made:
        lines += ["## Plots", ""]
        for name in made:
            rel = os.path.relpath(plots_dir / f"{name}.png", root)
            lines += [f"![{PLOTS[name]}]({Path(rel).as_posix()})", ""]
    lines += [NOTES_MARKER, "", notes, ""]
    return "\n".join(lines).rstrip() + "\n"


def md_table(headers: list[str], rows: list[Any]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(out)


# -- plots --------------------------------------------------------------------------------


def plots(results: dict[str, Any], out: Path) -> list[str]:
    if importlib.util.find_spec("matplotlib") is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    s = results["scenarios"]
    made = []
    for name, draw in (
        ("scaling", _scaling),
        ("latency_cdf", _latency),
        ("backlog", _backlog),
        ("peers", _peers),
    ):
        if draw(s, out / f"{name}.png"):
            made.append(name)
    return made


def _ok(s: dict[str, Any], name: str) -> dict[str, Any] | None:
    r = s.get(name)
    return r if isinstance(r, dict) and "error" not in r and "skipped" not in r else None


def _chart(s: dict[str, Any], name: str, **subplots: Any) -> tuple[dict[str, Any], Any, Any] | None:
    """The scenario's results with a new figure and its axes, or None when it has no figures."""
    r = _ok(s, name)
    if r is None:
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    return r, fig, axes


def _label(
    ax: Any, x: str | None, y: str, *, title: str | None = None, lines: bool = False
) -> None:
    """Axis names and title; a chart of lines also gets a grid and its legend."""
    if x:
        ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    if lines:
        ax.grid(alpha=0.3)
        ax.legend()


def _scaling(s: dict[str, Any], path: Path) -> bool:
    if (chart := _chart(s, "nodes", ncols=2, figsize=(9, 3.5))) is None:
        return False
    r, fig, (left, right) = chart
    for ax, runs, key, label in (
        (left, r["by_workers"], "workers", "workers (one node)"),
        (right, r["by_nodes"], "nodes", f"nodes ({r['workers']} workers in all, at least 1 each)"),
    ):
        xs = [run[key] for run in runs]
        ax.plot(xs, [run["jobs_per_s"] for run in runs], "o-", label="steady")
        ax.axhline(r["ceiling_jobs_per_s"], color="grey", linestyle=":", label="raw ceiling")
        ax.set_xticks(xs)
        ax.set_ylim(bottom=0)
        _label(ax, label, "jobs/s", lines=True)
    fig.suptitle("No-op throughput")
    return _save(fig, path)


def _latency(s: dict[str, Any], path: Path) -> bool:
    if (chart := _chart(s, "latency", figsize=(7, 4))) is None:
        return False
    r, fig, ax = chart
    for mode, label in (("idle", "idle"), ("paused", "after a pause"), ("load", "under load")):
        for what, style in (("start", "-"), ("finish", "--")):
            values = r.get(mode, {}).get(f"{what}_cdf_ms")
            if values:
                ys = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(values, ys, style, where="post", label=f"enqueue -> {what}, {label}")
    ax.set_xscale("log")
    _label(ax, "ms (log scale)", "fraction of jobs", title="Latency CDF", lines=True)
    return _save(fig, path)


def _backlog(s: dict[str, Any], path: Path) -> bool:
    if (chart := _chart(s, "backlog", figsize=(5, 3.5))) is None:
        return False
    r, fig, ax = chart
    labels = [f"{run['backlog']:,}" for run in r["runs"]]
    ax.bar(labels, [run["jobs_per_s"] for run in r["runs"]])
    _label(ax, f"jobs queued beneath the {r['drain']:,} drained", "jobs/s", title="Backlog scaling")
    return _save(fig, path)


def _peers(s: dict[str, Any], path: Path) -> bool:
    if (chart := _chart(s, "peers", figsize=(8, 4))) is None:
        return False
    r, fig, ax = chart
    names = ["jobfleet"] + [n for n, v in r["peers"].items() if "jobs_per_s" in v]
    rates = [r["jobfleet"]["jobs_per_s"]] + [r["peers"][n]["jobs_per_s"] for n in names[1:]]
    ax.bar(names, rates)
    ax.tick_params(axis="x", labelrotation=30)  # eight names side by side
    title = f"No-op drain, {r['jobs']:,} jobs, {r['workers']} worker processes"
    _label(ax, None, "jobs/s", title=title)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
