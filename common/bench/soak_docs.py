"""The soak in BENCHMARKS.md: a table a row a minute and one SVG of five panels, from the
soak's result. A run of `make bench` leaves the soak out (it is run only when named), so the
docs step keeps the last soak's result beside the plots (soak.json) and shows it again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAVED = "soak.json"
PLOT = "soak.svg"
# (row key, column heading, digits)
COLUMNS = (
    ("minute", "min", 1),
    ("finished_jobs_per_s", "jobs/s done", 0),
    ("start_p50_ms", "start p50 ms", 1),
    ("start_p99_ms", "start p99 ms", 1),
    ("unfinished", "queued+running", 0),
    ("jobs_table_mib", "jobs MiB", 1),
    ("jobs_index_mib", "jobs idx MiB", 1),
    ("jobs_dead_tuples", "jobs dead", 0),
    ("jobs_autovacuums", "jobs autovac", 0),
    ("log_table_mib", "log MiB", 2),
    ("log_dead_tuples", "log dead", 0),
    ("supervisor_rss_mib", "supervisor MiB", 1),
    ("worker_rss_mib", "worker MiB", 1),
    ("load_average", "load avg", 1),
)


def kept(results: dict[str, Any], plots_dir: Path) -> dict[str, Any] | None:
    """This run's soak (saved for the next runs), else the last one saved, else None."""
    soak = results.get("scenarios", {}).get("soak")
    saved = plots_dir / SAVED
    if isinstance(soak, dict) and "rows" in soak:
        plots_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"machine": results.get("machine"), "soak": soak}, indent=1))
        return soak
    if saved.exists():
        found: dict[str, Any] = json.loads(saved.read_text())["soak"]
        return found
    return None


def _cell(value: Any, digits: int) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, int | float) else "-"


def section(soak: dict[str, Any], plot: str | None) -> list[str]:
    """The markdown: what ran, the verdicts, the plot and the table."""
    mix = ", ".join(f"{kind} {share:.1%}" for kind, share in soak["mix"].items())
    growth = ", ".join(
        f"{name} {_cell(value, 2)}x" for name, value in soak["growth"].items() if value is not None
    )
    minutes = soak["duration_seconds"] / 60
    lines = [
        "## Soak",
        "",
        f"`jobfleet bench --scenario soak --duration {minutes:g}m`: "
        f"{soak['offered_jobs_per_s']:,.0f} jobs/s offered for {minutes:g} min "
        f"({mix}) to one node of {soak['workers']} workers, finished jobs kept "
        f"{soak['retention_seconds']:g} s; a row every {soak['sample_seconds']:g} s. "
        f"Last half's mean over the first half's (after the first row): {growth}.",
        "",
    ]
    if plot:
        lines += [f"![soak: throughput, latency, sizes, dead tuples, memory]({plot})", ""]
    lines.append("| " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    lines.append("|" + " --- |" * len(COLUMNS))
    for row in soak["rows"]:
        cells = [_cell(row.get(key), digits) for key, _, digits in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def draw(soak: dict[str, Any], path: Path) -> bool:
    """Five panels against minutes, as SVG (text, diffable, crisp at any size)."""
    import matplotlib.pyplot as plt

    rows = soak["rows"]
    if not rows:
        return False
    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(nrows=3, ncols=2, figsize=(10, 9))
    panels = (
        ("jobs/s", (("offered_jobs_per_s", "offered"), ("finished_jobs_per_s", "finished"))),
        ("enqueue -> start, ms", (("start_p50_ms", "p50"), ("start_p99_ms", "p99"))),
        (
            "MiB",
            (
                ("jobs_table_mib", "jobs"),
                ("jobs_index_mib", "jobs' indexes"),
                ("log_table_mib", "job_attempt_log"),
                ("log_index_mib", "its indexes"),
            ),
        ),
        ("dead tuples", (("jobs_dead_tuples", "jobs"), ("log_dead_tuples", "job_attempt_log"))),
        ("RSS, MiB", (("supervisor_rss_mib", "supervisor"), ("worker_rss_mib", "worker (max)"))),
        ("queued + running", (("unfinished", "jobs not finished"),)),
    )
    for ax, (label, series) in zip(axes.flat, panels, strict=True):
        for key, name in series:
            ax.plot(minutes, [r.get(key) or 0 for r in rows], ".-", label=name)
        ax.set_xlabel("minutes")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Soak: {soak['offered_jobs_per_s']:,.0f} jobs/s offered")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return True
