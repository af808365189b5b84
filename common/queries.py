"""Named SQL queries, loaded once from sql/queries/*.sql, one file per domain (`-- name: x`
headers). A name is unique across the files."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@lru_cache(maxsize=1)
def _all() -> dict[str, str]:
    found: dict[str, str] = {}
    folder = resources.files("jobfleet.sql").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        parts = _HEADER.split(entry.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice (sql/queries/{entry.name})")
            lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
            found[name] = "\n".join(lines).strip().rstrip(";")
    return found


def sql(name: str) -> str:
    """The statement called `name`; a KeyError names a query that does not exist."""
    try:
        return _all()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries/") from None
