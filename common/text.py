"""Text on its way to PostgreSQL: what it cannot store, found or cleaned out.

PostgreSQL's text and jsonb refuse NUL (U+0000), and UTF-8 cannot encode a lone surrogate
(U+D800-U+DFFF, which Python strings may hold after `surrogateescape` decoding or a bad
`\\udcff` escape). Input from callers is refused when it holds either (`text_problem` says
why); text a handler produced (errors, tracebacks, progress messages) is cleaned visibly
(`clean_text`), because refusing it would lose the news that a job failed.
"""

from __future__ import annotations

import re

# What replaces a NUL or a lone surrogate in cleaned text: visible, so a reader sees that
# something was there.
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TRUNCATION_NOTE = "\n[... {dropped} bytes cut: over the {limit}-byte limit ...]\n"


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store `text`, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found[0] == "\x00":
        return f"contains a NUL character (\\u0000) at position {found.start()}"
    return f"contains a lone surrogate (\\u{ord(found[0]):04x}) at position {found.start()}"


def clean_text(text: str, limit_bytes: int | None = None) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD and, with `limit_bytes`, cut to
    at most that many bytes of UTF-8. The cut is in the middle, with a note saying how much
    went: a traceback's head says where it began and its tail what was raised. Always a plain
    str: a subclass of str from a handler may not survive the trip to the supervisor."""
    if type(text) is not str:
        text = str.__str__(text)
    if _UNSTORABLE.search(text) is not None:
        text = _UNSTORABLE.sub(REPLACEMENT, text)
    if limit_bytes is None or len(text) <= limit_bytes // 4:
        return text  # fast path: even all 4-byte characters would fit
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    room = limit_bytes - len(TRUNCATION_NOTE.format(dropped=len(encoded), limit=limit_bytes))
    room = max(0, room - 8)  # the note's figure may be a digit or two longer than estimated
    # Cut bytes, then drop the partial characters at the edges: never a split character.
    head = encoded[: room // 2].decode("utf-8", errors="ignore")
    tail = encoded[len(encoded) - (room - room // 2) :].decode("utf-8", errors="ignore")
    dropped = len(encoded) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return head + TRUNCATION_NOTE.format(dropped=dropped, limit=limit_bytes) + tail
