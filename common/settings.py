"""Settings from the environment (prefix JOBFLEET_), validated once at start."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobfleet.data_dir import default_data_dir
from jobfleet.errors import ConfigError
from jobfleet.options import BACKOFF_MAX_SECONDS, DELAY_MAX_SECONDS

# Why these defaults: a lease of 30 s outlives any pause short of a real failure while keeping
# recovery under a minute; children beat every second so a hung child is found within a few.
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_CHILD_HEARTBEAT_SECONDS = 1.0
DEFAULT_NODE_HEARTBEAT_SECONDS = 5.0
MIB = 1024 * 1024
DAY = 86400.0


class Bound(NamedTuple):
    low: float
    high: float
    why: str


# Every numeric setting's range, and why. A value out of range (or not finite) stops the
# command at start (exit 2) with the variable, the value and this rule: one that passes works.
BOUNDS = {
    "lease_seconds": Bound(
        1, DAY, "renewed every third of it; a day is the longest a dead node's jobs may wait"
    ),
    "heartbeat_seconds": Bound(
        0.05, 60, "a silent worker or node is noticed after a few beats: at most a minute"
    ),
    "node_heartbeat_seconds": Bound(0.05, 60, "as JOBFLEET_HEARTBEAT_SECONDS"),
    "reaper_interval_seconds": Bound(0.1, 3600, "a database scan each time"),
    "grace_seconds": Bound(0, DAY, "0 kills at once; a drain longer than a day is a hang"),
    "backoff_base_seconds": Bound(0, BACKOFF_MAX_SECONDS, "a retry waits at most a week"),
    "backoff_max_seconds": Bound(0, BACKOFF_MAX_SECONDS, "a retry waits at most a week"),
    "retention_seconds": Bound(0, DELAY_MAX_SECONDS, "0 keeps everything; at most 100 years"),
    # A JSON text of small numbers takes 6x its size as jsonb (32 MiB make 192 MiB), and
    # PostgreSQL cannot build a jsonb value much over 256 MB: 48 MiB fail.
    "max_payload_bytes": Bound(1, 32 * MIB, "jsonb takes up to 6x the JSON text's size"),
    "max_result_bytes": Bound(1, 32 * MIB, "jsonb takes up to 6x the JSON text's size"),
    "queue_stats_seconds": Bound(0.1, 3600, "a count per queue and state each time"),
    "max_request_bytes": Bound(1024, 1024 * MIB, "a body is read into memory whole"),
    "connect_timeout_seconds": Bound(1, 3600, "libpq counts whole seconds"),
    "statement_timeout_seconds": Bound(
        0.001, DAY, "PostgreSQL counts whole milliseconds, and 0 turns the timeout off"
    ),
    "kill_grace_seconds": Bound(0, 3600, "0 sends SIGKILL at once"),
    "max_jobs_per_child": Bound(0, 1_000_000_000, "0 never recycles"),
    "max_child_rss_mb": Bound(0, 1024 * 1024, "0 never recycles; at most 1 TiB"),
    "http_processes": Bound(0, 64, "0: one per CPU; each holds up to 8 database connections"),
}


class Settings(BaseSettings):
    # allow_inf_nan=False: `inf` is no duration and NaN compares false with every bound.
    model_config = SettingsConfigDict(env_prefix="JOBFLEET_", extra="ignore", allow_inf_nan=False)

    database_url: str | None = Field(
        default=None, description="libpq URL of the cluster; unset: the embedded PostgreSQL"
    )
    # Per user, never the working directory: every command reaches the same cluster.
    data_dir: Path = Field(
        default_factory=default_data_dir, description="the embedded cluster's home"
    )
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)
    # One variable for both beats, as the contract names it; NODE_HEARTBEAT_SECONDS overrides
    # the node's alone.
    heartbeat_seconds: float | None = Field(default=None, gt=0)
    node_heartbeat_seconds: float | None = Field(default=None, gt=0)
    reaper_interval_seconds: float = Field(default=5.0, gt=0)
    # The longest an idle node waits between looks for work nobody announced (NOTIFY brings
    # everything else at once): a retry whose node died, a job made ready by hand in SQL.
    idle_poll_seconds: float = Field(default=5.0, ge=0.05, le=3600)
    grace_seconds: float = Field(default=30.0, ge=0)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=3600.0, ge=0)
    # Succeeded and cancelled jobs are kept this long, then pruned; 0 keeps them forever.
    retention_seconds: float = Field(default=7 * 86400, ge=0)
    max_payload_bytes: int = Field(default=MIB, gt=0)
    max_result_bytes: int = Field(default=MIB, gt=0)
    # An attempt's error (a traceback, a crash's cause) is cut to this many bytes: a handler
    # that raises a 20 MB message would otherwise store it whole, on every attempt. At least
    # 1 KiB, so the cut note and the error's last line always have room.
    max_error_bytes: int = Field(default=64 * 1024, ge=1024, le=MIB)
    # How often the leader counts jobs per queue and state for /metrics (about the scrape
    # interval: counting a big backlog costs the database as much as a few thousand jobs).
    queue_stats_seconds: float = Field(default=15.0, gt=0)
    # Processes serving the HTTP API on its port (they share the listening socket, as
    # gunicorn's workers do): one Python process is busy at a few hundred requests a second,
    # whatever the number of clients. 0: one per CPU.
    http_processes: int = Field(default=0, ge=0)
    # The HTTP API's cap on one request body (a batch of jobs included).
    max_request_bytes: int = Field(default=10 * MIB, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    statement_timeout_seconds: float = Field(default=30.0, gt=0)
    # Killing a child: SIGTERM, then SIGKILL after this long.
    kill_grace_seconds: float = Field(default=2.0, ge=0)
    # Recycling children (off by default), like gunicorn's max_requests.
    max_jobs_per_child: int = Field(default=0, ge=0)
    max_child_rss_mb: int = Field(default=0, ge=0)
    node_name: str | None = Field(default=None, min_length=1, max_length=128)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(*BOUNDS)
    @classmethod
    def _within_bounds(cls, value: float | None, info: ValidationInfo) -> float | None:
        bound = BOUNDS[str(info.field_name)]
        if value is not None and not bound.low <= value <= bound.high:
            raise ValueError("out of range")  # _explain says the rule
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        # Either a URL or a key=value conninfo string, read as libpq reads it.
        if value is not None:
            from jobfleet.conninfo import conninfo_problem

            problem = conninfo_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @property
    def child_heartbeat_seconds(self) -> float:
        return self.heartbeat_seconds or DEFAULT_CHILD_HEARTBEAT_SECONDS

    @property
    def child_silent_after(self) -> float:
        """A child whose heartbeat is this old is hung: five beats missed, at least 2 s."""
        return max(5 * self.child_heartbeat_seconds, 2.0)

    @property
    def node_heartbeat(self) -> float:
        return (
            self.node_heartbeat_seconds or self.heartbeat_seconds or DEFAULT_NODE_HEARTBEAT_SECONDS
        )


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a bad value raises ConfigError naming the variable and the rule."""
    try:
        config = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    _warn_unknown(os.environ)
    return config


# JOBFLEET_ variables that are not settings but are meant: the systemd unit's handler list;
# the benchmark's broker for its Celery peer, its switch that installs no peer, and the
# database it hands its Graphile Worker peer.
NOT_SETTINGS = frozenset(
    {
        "JOBFLEET_HANDLERS",
        "JOBFLEET_BENCH_CELERY_BROKER",
        "JOBFLEET_BENCH_OFFLINE",
        "JOBFLEET_BENCH_PG",
    }
)


_warned: set[str] = set()  # each misspelt name is said once per process, however often read


def _warn_unknown(environ: Mapping[str, str]) -> None:
    """A misspelled setting would be ignored in silence and its default used: say so."""
    known = {f"JOBFLEET_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    unknown = {n for n in environ if n.startswith("JOBFLEET_") and n not in known} - _warned
    _warned.update(unknown)
    for name in sorted(unknown):
        guess = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        print(f"jobfleet: warning: {name} is not a setting and is ignored{hint}", file=sys.stderr)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = f"JOBFLEET_{field.upper()}"
        raw = os.environ.get(var, err.get("input"))
        shown = repr(raw)
        rule = str(err["msg"]).removeprefix("Value error, ")
        if field == "database_url" and isinstance(raw, str):
            from jobfleet.conninfo import REDACTED, mask_password

            masked = mask_password(raw)
            shown = masked if masked == REDACTED else repr(masked)
        bound = BOUNDS.get(field)
        if bound is not None:
            kind = "whole number" if Settings.model_fields[field].annotation is int else "number"
            rule = f"must be a {kind} from {bound.low:.15g} to {bound.high:.15g} ({bound.why})"
        lines.append(f"{var}={shown} is not allowed: {rule}")
    return "; ".join(lines)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def http_process_count(config: Settings) -> int:
    """How many processes serve the HTTP API (JOBFLEET_HTTP_PROCESSES; 0: one per CPU)."""
    return config.http_processes or len(os.sched_getaffinity(0)) or 1
