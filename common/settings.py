"""Settings from the environment (prefix JOBFLEET_), validated once at start."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobfleet.data_dir import default_data_dir
from jobfleet.errors import ConfigError

# Why these defaults: a lease of 30 s outlives any pause short of a real failure while keeping
# recovery under a minute; children beat every second so a hung child is found within a few.
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_CHILD_HEARTBEAT_SECONDS = 1.0
DEFAULT_NODE_HEARTBEAT_SECONDS = 5.0
MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBFLEET_", extra="ignore")

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        # Either a URL or a key=value conninfo string.
        if (
            value is not None
            and not value.startswith(("postgresql://", "postgres://"))
            and "=" not in value
        ):
            raise ValueError("must be a libpq URL such as postgresql://user:pass@host:5432/db")
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


# JOBFLEET_ variables that are not settings but are meant: the systemd unit's handler list,
# the benchmark's broker for its Celery peer.
NOT_SETTINGS = frozenset({"JOBFLEET_HANDLERS", "JOBFLEET_BENCH_CELERY_BROKER"})


def _warn_unknown(environ: Mapping[str, str]) -> None:
    """A misspelled setting would be ignored in silence and its default used: say so."""
    known = {f"JOBFLEET_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    for name in sorted(n for n in environ if n.startswith("JOBFLEET_") and n not in known):
        guess = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        print(f"jobfleet: warning: {name} is not a setting and is ignored{hint}", file=sys.stderr)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = f"JOBFLEET_{field.upper()}"
        raw = os.environ.get(var, err.get("input"))
        lines.append(f"{var}={raw!r} is not allowed: {err['msg']}")
    return "; ".join(lines)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()
