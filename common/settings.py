"""Settings from the environment (prefix JOBFLEET_), validated once at start."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args, get_type_hints

from jobfleet.data_dir import default_data_dir
from jobfleet.errors import ConfigError
from jobfleet.options import BACKOFF_MAX_SECONDS, DELAY_MAX_SECONDS

if TYPE_CHECKING:
    from pydantic import ValidationError

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
        1,
        DAY,
        "renewed every third of it at least; a day is the longest a dead node's jobs may wait",
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


def rule(
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> dict[str, float]:
    """A setting's own constraints beside its type (and BOUNDS), as pydantic's Field takes them."""
    given = {"gt": gt, "ge": ge, "le": le, "min_length": min_length, "max_length": max_length}
    return {name: value for name, value in given.items() if value is not None}


@dataclass
class Settings:
    """The settings, one attribute each (environment JOBFLEET_<NAME>); load_settings reads
    and checks them. Plain attributes rather than a pydantic model: importing pydantic and
    building the model was about 75 ms of every command's start (a quarter of a supervisor's
    start before its first claim); pydantic is imported only to explain a value refused."""

    # libpq URL of the cluster; unset: the embedded PostgreSQL.
    database_url: str | None = None
    # The embedded cluster's home. Per user, never the working directory: every command
    # reaches the same cluster.
    data_dir: Path = field(default_factory=default_data_dir)
    lease_seconds: float = field(default=DEFAULT_LEASE_SECONDS, metadata=rule(gt=0))
    # One variable for both beats, as the contract names it; NODE_HEARTBEAT_SECONDS overrides
    # the node's alone.
    heartbeat_seconds: float | None = field(default=None, metadata=rule(gt=0))
    node_heartbeat_seconds: float | None = field(default=None, metadata=rule(gt=0))
    reaper_interval_seconds: float = field(default=5.0, metadata=rule(gt=0))
    # The longest an idle node waits between looks for work nobody announced (NOTIFY brings
    # everything else at once): a retry whose node died, a job made ready by hand in SQL.
    idle_poll_seconds: float = field(default=5.0, metadata=rule(ge=0.05, le=3600))
    grace_seconds: float = field(default=30.0, metadata=rule(ge=0))
    backoff_base_seconds: float = field(default=1.0, metadata=rule(ge=0))
    backoff_max_seconds: float = field(default=3600.0, metadata=rule(ge=0))
    # Succeeded and cancelled jobs are kept this long, then pruned; 0 keeps them forever.
    retention_seconds: float = field(default=7 * DAY, metadata=rule(ge=0))
    max_payload_bytes: int = field(default=MIB, metadata=rule(gt=0))
    max_result_bytes: int = field(default=MIB, metadata=rule(gt=0))
    # An attempt's error (a traceback, a crash's cause) is cut to this many bytes: a handler
    # that raises a 20 MB message would otherwise store it whole, on every attempt. At least
    # 1 KiB, so the cut note and the error's last line always have room.
    max_error_bytes: int = field(default=64 * 1024, metadata=rule(ge=1024, le=MIB))
    # How often the leader counts jobs per queue and state for /metrics (about the scrape
    # interval: counting a big backlog costs the database as much as a few thousand jobs).
    queue_stats_seconds: float = field(default=15.0, metadata=rule(gt=0))
    # Processes serving the HTTP API on its port (they share the listening socket, as
    # gunicorn's workers do): one Python process is busy at a few hundred requests a second,
    # whatever the number of clients. 0: one per CPU.
    http_processes: int = field(default=0, metadata=rule(ge=0))
    # The HTTP API's cap on one request body (a batch of jobs included).
    max_request_bytes: int = field(default=10 * MIB, metadata=rule(gt=0))
    connect_timeout_seconds: float = field(default=5.0, metadata=rule(gt=0))
    statement_timeout_seconds: float = field(default=30.0, metadata=rule(gt=0))
    # Killing a child: SIGTERM, then SIGKILL after this long.
    kill_grace_seconds: float = field(default=2.0, metadata=rule(ge=0))
    # Recycling children (off by default), like gunicorn's max_requests.
    max_jobs_per_child: int = field(default=0, metadata=rule(ge=0))
    max_child_rss_mb: int = field(default=0, metadata=rule(ge=0))
    node_name: str | None = field(default=None, metadata=rule(min_length=1, max_length=128))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

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


@lru_cache(maxsize=1)
def setting_types() -> dict[str, Any]:
    """Each setting's type (`float | None`, `Literal[...]`), as annotated on Settings."""
    return get_type_hints(Settings)


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `overrides`, which win); a bad value raises ConfigError naming
    the variable and the rule.

    What is read as pydantic-settings reads it (env_prefix JOBFLEET_, names in any case, extra
    variables ignored, init arguments first, finite numbers only). The values plainly good
    (read_plainly) are taken as they are; anything else, a value refused or one in a form this
    reader leaves alone, goes through the pydantic model, which accepts it as pydantic does or
    explains the refusal as before."""
    values = read_plainly(os.environ, overrides)
    if values is None:
        values = _read_with_pydantic(overrides)
    _warn_unknown(os.environ)
    return Settings(**values)  # type: ignore[arg-type]


PREFIX = "JOBFLEET_"
# Numbers in their plain forms; other spellings (" 5", "1_000", "+5", "5.") go to pydantic.
_PLAIN_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_PLAIN_INT = re.compile(r"-?[0-9]+")


def read_plainly(
    environ: Mapping[str, str], overrides: Mapping[str, object]
) -> dict[str, Any] | None:
    """The settings given (environment, then `overrides`) when every one is plainly good;
    None when any is not (refused, or in a form left to pydantic)."""
    types = setting_types()
    given: dict[str, object] = {}
    for key, text in environ.items():
        if key[: len(PREFIX)].upper() != PREFIX:
            continue
        if key != key.upper():  # pydantic-settings matches names in any case: its rules
            return None
        name = key[len(PREFIX) :].lower()
        if name in types:
            given[name] = text
    given.update((name, value) for name, value in overrides.items() if name in types)
    values = {}
    for name, value in given.items():
        ok, read = _plain_value(name, types[name], value)
        if not ok:
            return None
        values[name] = read
    return values


def _plain_value(name: str, kind: Any, value: object) -> tuple[bool, Any]:
    """(True, the value read) for a plainly good value of setting `name`; (False, None) else."""
    optional = type(None) in get_args(kind)
    if optional:
        kind = next(t for t in get_args(kind) if t is not type(None))
        if value is None:
            return True, None
    if kind is float or kind is int:
        number = _plain_number(kind, value)
        if number is None or not _within(name, number):
            return False, None
        return True, number
    if not isinstance(value, str):
        return (kind is Path and isinstance(value, Path)), value
    if name == "database_url":
        if not value.strip():
            return True, None
        from jobfleet.conninfo import conninfo_problem

        return conninfo_problem(value) is None, value
    if kind is Path:
        return value != "", Path(value)
    if kind is str:
        limits = SETTING_RULES[name]
        return limits.get("min_length", 0) <= len(value) <= limits.get(
            "max_length", len(value)
        ), value
    choices = get_args(kind)  # a Literal; log_level is read in upper case
    read = value.upper() if name == "log_level" else value
    return read in choices, read


def _plain_number(kind: type, value: object) -> float | int | None:
    if isinstance(value, str):
        if not (_PLAIN_INT if kind is int else _PLAIN_FLOAT).fullmatch(value):
            return None
        number: float | int = kind(value)
    elif type(value) is int or (kind is float and type(value) is float):
        number = kind(value)
    else:
        return None
    return number if math.isfinite(number) else None


def _within(name: str, number: float) -> bool:
    limits = SETTING_RULES[name]
    bound = BOUNDS.get(name)
    return (
        ("gt" not in limits or number > limits["gt"])
        and ("ge" not in limits or number >= limits["ge"])
        and ("le" not in limits or number <= limits["le"])
        and (bound is None or bound.low <= number <= bound.high)
    )


SETTING_RULES: dict[str, dict[str, float]] = {f.name: dict(f.metadata) for f in fields(Settings)}


def _read_with_pydantic(overrides: Mapping[str, object]) -> dict[str, Any]:
    from pydantic import ValidationError

    try:
        model = _pydantic_model()(**overrides)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    return dict(model)


@lru_cache(maxsize=1)
def _pydantic_model() -> Any:
    """The settings as a pydantic-settings model, built from Settings: the reader of values
    read_plainly leaves alone, and the explanation of a refused one."""
    from pydantic import Field, create_model, field_validator
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Base(BaseSettings):
        # allow_inf_nan=False: `inf` is no duration and NaN compares false with every bound.
        model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", allow_inf_nan=False)

    types = setting_types()
    definitions: dict[str, Any] = {}
    for f in fields(Settings):
        if f.default_factory is not MISSING:
            default = Field(default_factory=f.default_factory, **f.metadata)
        else:
            default = Field(default=f.default, **f.metadata)
        definitions[f.name] = (types[f.name], default)
    validators: dict[str, Callable[..., Any]] = {
        "within_bounds": field_validator(*BOUNDS)(_within_bounds),
        "upper": field_validator("log_level", mode="before")(_upper),
        "url": field_validator("database_url")(_url),
    }
    return create_model("Settings", __base__=Base, __validators__=validators, **definitions)


def _within_bounds(cls: Any, value: float | None, info: Any) -> float | None:
    bound = BOUNDS[str(info.field_name)]
    if value is not None and not bound.low <= value <= bound.high:
        raise ValueError("out of range")  # _explain says the rule
    return value


def _upper(cls: Any, value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _url(cls: Any, value: str | None) -> str | None:
    if value is not None and not value.strip():
        return None
    # Either a URL or a key=value conninfo string, read as libpq reads it.
    if value is not None:
        from jobfleet.conninfo import conninfo_problem

        problem = conninfo_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


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
    known = {f"{PREFIX}{name.upper()}" for name in setting_names()} | NOT_SETTINGS
    unknown = {n for n in environ if n.startswith("JOBFLEET_") and n not in known} - _warned
    _warned.update(unknown)
    for name in sorted(unknown):
        import difflib

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
            kind = "whole number" if setting_types()[field] is int else "number"
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
