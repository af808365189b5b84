"""What PostgreSQL cannot store in text, found and cleaned (no database)."""

from __future__ import annotations

from jobfleet.text import REPLACEMENT, clean_text, text_problem


def test_storable_text_has_no_problem() -> None:
    assert text_problem("plain, ünïcode, 😀 and a backslash-u0000 \\u0000") is None


def test_nul_and_lone_surrogates_are_named_with_their_position() -> None:
    assert text_problem("ab\x00c") == "contains a NUL character (\\u0000) at position 2"
    assert text_problem("x\udcff") == "contains a lone surrogate (\\udcff) at position 1"


def test_clean_text_replaces_what_cannot_be_stored_visibly() -> None:
    assert clean_text("bad\x00byte \udcff!") == f"bad{REPLACEMENT}byte {REPLACEMENT}!"
    assert text_problem(clean_text("\ud800\x00")) is None


def test_clean_text_leaves_short_text_alone() -> None:
    text = "é" * 100
    assert clean_text(text, 1000) is text


def test_clean_text_cuts_the_middle_to_the_limit_without_splitting_a_character() -> None:
    text = "é" * 50_000 + "ValueError: the end"  # over 100,000 bytes of UTF-8
    cleaned = clean_text(text, 1000)
    assert len(cleaned.encode("utf-8")) <= 1000
    assert cleaned.startswith("é" * 200)
    assert cleaned.endswith("é" * 100 + "ValueError: the end")
    assert "bytes cut: over the 1000-byte limit" in cleaned
    assert REPLACEMENT not in cleaned


def test_clean_text_reports_how_much_was_cut() -> None:
    cleaned = clean_text("a" * 10_000, 1000)
    head, _, rest = cleaned.partition("\n[... ")
    tail = rest.partition("]\n")[2]
    assert rest.startswith(f"{10_000 - len(head) - len(tail)} bytes cut")
    assert 900 < len(cleaned) <= 1000


def test_clean_text_gives_a_plain_str_for_a_subclass() -> None:
    class Odd(str):
        def __new__(cls, a: str, b: str) -> Odd:  # pickle could not rebuild it
            return str.__new__(cls, a + b)

        def __str__(self) -> str:
            return self

    cleaned = clean_text(Odd("hello ", "world"))
    assert type(cleaned) is str and cleaned == "hello world"
