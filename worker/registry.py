"""The handler registry: `@handler("type")` on a plain function `(payload) -> result`."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from jobfleet.options import check_name, check_options, encode_json
from jobfleet.schedules import schedule_of
from jobfleet.type_limits import check_limit_key, check_max_running, parse_rate

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class HandlerSpec:
    type: str
    fn: Callable[..., Any]
    takes_context: bool
    timeout: float | None = None
    max_attempts: int | None = None
    backoff: str | None = None
    backoff_seconds: float | None = None
    queue: str | None = None
    priority: int | None = None
    # Jobs of this type one worker runs at once: on its event loop for an `async def`, on as
    # many threads for a plain function. 1 (and a plain function): one at a time, in the
    # worker's main thread, as every job ran before.
    concurrency: int = 1
    is_async: bool = False
    # A periodic job's schedule ("cron 0 3 * * *", "every 30"; see jobfleet.schedules) and
    # the payload each of its jobs gets.
    schedule: str | None = None
    cron_payload: Any = None
    # Its writes through ctx.tx commit with its job's completion, in the worker.
    transactional: bool = False
    # Limits for the whole cluster (jobfleet.type_limits): jobs of the type running at once,
    # and starts per period as (count, seconds). None: no limit declared.
    max_running: int | None = None
    rate: tuple[int, int] | None = None
    # The payload field whose values the limits hold for (None: for the whole type).
    limit_key: str | None = None

    @property
    def concurrent(self) -> bool:
        """Run beside the worker's other jobs (async or threaded), not in its main thread."""
        return self.is_async or self.concurrency > 1

    def defaults_row(self) -> dict[str, Any]:
        """This type's defaults as the job_types table stores them."""
        return {
            "type": self.type,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout,
            "backoff": self.backoff,
            "backoff_seconds": self.backoff_seconds,
        }

    def limits_row(self) -> dict[str, Any]:
        """This type's declared limits as type_limits stores them."""
        count, seconds = self.rate or (None, None)
        return {
            "type": self.type,
            "max_running": self.max_running,
            "rate_count": count,
            "rate_seconds": seconds,
            "limit_key": self.limit_key,
        }


_REGISTRY: dict[str, HandlerSpec] = {}


def handler(
    type: str,
    *,
    timeout: float | None = None,
    max_attempts: int | None = None,
    backoff: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    concurrency: int = 1,
    cron: str | None = None,
    every: float | None = None,
    cron_payload: Any = None,
    transactional: bool = False,
    max_running: int | None = None,
    rate: str | None = None,
    limit_key: str | None = None,
) -> Callable[[F], F]:
    """Register `fn` as the handler of jobs of `type`.

    The options are the type's defaults; a job's own options at enqueue win over them. A
    function with a second parameter receives the job's context (id, attempt, progress,
    cancellation, logger).

    `concurrency`: how many jobs of this type one worker process runs at once. On an
    `async def` handler they share the worker's event loop; on a plain function they run on
    that many threads of the worker. Default 1: one at a time, in the worker's main thread.

    `cron` (five fields, UTC) or `every` (seconds, at least 1) make it a periodic job: one job
    a tick for the whole cluster, with `cron_payload` as its payload.

    `transactional=True`: the handler takes `(payload, ctx)` and writes through `ctx.tx`, a
    connection in an open transaction on the jobs database; the worker records the job's
    success in that same transaction and commits, so the writes happen exactly once or not at
    all (a worker killed mid-job, or one whose lease was lost, leaves none behind).
    `max_running`: at most that many jobs of this type running at once across every node;
    `rate` ("100/m", "20/s", "500/h"): at most that many started in any such period across
    every node. `limit_key` ("customer_id"): both hold per value of that payload field instead,
    and the type's keys take turns at being claimed, so one key's backlog never starves
    another's. `jobfleet types set` changes all three at run time.
    """
    check_name("type", type)
    concurrency = check_concurrency(concurrency)
    schedule = schedule_of(cron, every)
    limit = None if max_running is None else check_max_running(max_running)
    starts = None if rate is None else parse_rate(rate)
    key = None if limit_key is None else check_limit_key(limit_key)
    if cron_payload is not None:
        encode_json("cron_payload", cron_payload, CRON_PAYLOAD_MAX_BYTES)
    checked = check_options(
        timeout=timeout,
        max_attempts=max_attempts,
        backoff=backoff,
        queue=queue,
        priority=priority,
    )

    def register(fn: F) -> F:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not 1 <= len(params) <= 2:
            raise TypeError(
                f"handler {fn.__qualname__} for {type!r} must take (payload) or "
                f"(payload, ctx); it takes {len(params)} positional parameters"
            )
        if transactional and (len(params) != 2 or inspect.iscoroutinefunction(fn)):
            raise TypeError(
                f"transactional handler {fn.__qualname__} for {type!r} must be a plain function "
                "taking (payload, ctx): it writes through ctx.tx"
            )
        existing = _REGISTRY.get(type)
        if existing is not None and existing.fn is not fn:
            qualname = f"{existing.fn.__module__}.{existing.fn.__qualname__}"
            raise ValueError(f"job type {type!r} already has a handler: {qualname}")
        _REGISTRY[type] = HandlerSpec(
            type=type,
            fn=fn,
            takes_context=len(params) == 2,
            timeout=checked.timeout,
            max_attempts=checked.max_attempts,
            backoff=checked.backoff,
            backoff_seconds=checked.backoff_seconds,
            queue=checked.queue,
            priority=checked.priority,
            concurrency=concurrency,
            is_async=inspect.iscoroutinefunction(fn),
            schedule=schedule,
            cron_payload=cron_payload,
            transactional=bool(transactional),
            max_running=limit,
            rate=starts,
            limit_key=key,
        )
        return fn

    return register


CONCURRENCY_MAX = 1000
# A periodic job's payload is published with its node's heartbeat row: kept small.
CRON_PAYLOAD_MAX_BYTES = 64 * 1024


def check_concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"concurrency must be a whole number, not {value!r}")
    if not 1 <= value <= CONCURRENCY_MAX:
        raise ValueError(f"concurrency must be 1 to {CONCURRENCY_MAX}, not {value}")
    return value


def registered() -> dict[str, HandlerSpec]:
    return dict(_REGISTRY)


DEFAULT_HANDLER_MODULES = ("jobfleet.worker.examples",)


def load_handlers(
    modules: Iterable[str], *, search_first: Sequence[str] = ()
) -> dict[str, HandlerSpec]:
    """Import the handler modules, looking in `search_first` before the rest of sys.path;
    return every registered handler by type. A module that is not found is named with where
    it was looked for; one whose own import fails, with its traceback."""
    for folder in reversed(search_first):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise _failed_import(name) from exc  # the module imports something missing
            where = ", ".join(search_first) or "sys.path"
            raise ImportError(
                f"cannot import handler module {name!r}: no module named {exc.name!r} in "
                f"{where} or the installed packages. Pass an importable module path to "
                "--handlers, and add its folder with --pythonpath if it is not the working "
                "directory."
            ) from exc
        except Exception as exc:
            raise _failed_import(name) from exc
    if not _REGISTRY:
        raise ValueError(
            f"no handlers registered by {', '.join(modules)}: decorate functions with "
            "@jobfleet.worker.handler('type')"
        )
    return registered()


def _failed_import(name: str) -> ImportError:
    """The module was found, but running it failed: its traceback says where and why."""
    text = traceback.format_exc().rstrip()
    return ImportError(f"importing handler module {name!r} failed:\n{text}")
