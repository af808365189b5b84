"""Running one job in this process: nothing a handler raises, returns or is given escapes
execute() (a worker that died of it would run its batch-mates again)."""

from __future__ import annotations

from typing import Any

from jobfleet.jobs import AttemptResult
from jobfleet.worker.execute import execute
from jobfleet.worker.registry import HandlerSpec


def run(fn: Any, payload_json: str = "null") -> AttemptResult:
    spec = HandlerSpec(type="t", fn=fn, takes_context=False)
    outcome = execute(1, 1, "t", payload_json, {"t": spec}, max_result_bytes=10**6)
    assert isinstance(outcome, AttemptResult), outcome
    assert outcome.error is not None
    return outcome


def test_an_exception_whose_traceback_cannot_be_formatted_still_fails_the_attempt() -> None:
    class Noted(Exception):
        @property
        def __notes__(self) -> list[str]:
            raise RuntimeError("no notes for you")

    def raises(payload: Any) -> None:
        raise Noted("boom")

    failed = run(raises)
    assert (failed.outcome, failed.final) == ("failed", False)  # a failure: retried as usual
    assert "boom" in failed.error  # type: ignore[operator]


def test_a_code_object_with_a_nul_in_its_filename_fails_cleanly() -> None:
    def inner(payload: Any) -> None:
        raise ValueError("from a strange file")

    inner.__code__ = inner.__code__.replace(co_filename="f\x00.py")
    failed = run(inner)
    assert "from a strange file" in failed.error  # type: ignore[operator]
    assert "\x00" not in failed.error  # type: ignore[operator]


def test_an_exception_whose_message_raises_is_named_by_its_type() -> None:
    class Mute(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def raises(payload: Any) -> None:
        raise Mute()

    assert "Mute" in run(raises).error  # type: ignore[operator]


def test_a_result_whose_encoding_raises_ends_the_job_at_once() -> None:
    class Hostile(dict[str, int]):
        def items(self) -> Any:
            raise RuntimeError("not today")

    def deep(payload: Any) -> Any:
        value: Any = []
        for _ in range(100_000):
            value = [value]
        return value

    for fn in (lambda p: Hostile(a=1), deep):
        failed = run(fn)
        assert failed.final, failed.error
        assert failed.error.startswith("the handler's return value cannot be stored")  # type: ignore[union-attr]


def test_a_payload_that_cannot_be_read_ends_the_job_at_once_without_running_it() -> None:
    ran: list[Any] = []
    for text in ("[" * 100_000 + "]" * 100_000, "1" * 5000):
        failed = run(ran.append, text)
        assert failed.final and failed.error.startswith("the payload cannot be read")  # type: ignore[union-attr]
    assert ran == []
