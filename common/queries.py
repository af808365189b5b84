"""Named SQL queries, loaded once from sql/queries.sql (`-- name: x` headers)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@lru_cache(maxsize=1)
def _all() -> dict[str, str]:
    text = resources.files("jobfleet.sql").joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip().rstrip(";")
    return found


def sql(name: str) -> str:
    """The statement called `name`; a KeyError names a query that does not exist."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
