"""A payload's key under a limit key field, as jobfleet_limit_key (sql/0011_limit_keys.sql)
computes it, for enqueue_many's COPY, which cannot call a function: the field's text for a
string, an integer or a boolean, a digest for one over KEY_CHARS_MAX characters, '' (the
shared "no key" bucket) for a payload that is not an object or holds no scalar there.

A float is the one value whose text only PostgreSQL can tell (its numeric's own spelling of
the JSON number): None for it, and the database keys those rows (key_copied_jobs)."""

from __future__ import annotations

import hashlib
from typing import Any

KEY_CHARS_MAX = 128


def payload_key(payload: Any, field: str) -> str | None:
    """The key, or None when the database must compute it (a float)."""
    if not isinstance(payload, dict):
        return ""
    value = payload.get(field)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, float):
        return None
    else:  # missing, null, an object, an array
        return ""
    if len(text) <= KEY_CHARS_MAX:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
