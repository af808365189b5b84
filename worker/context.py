"""What a handler that asks for it gets as its second argument."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from jobfleet.text import clean_text

ProgressSink = Callable[[int, int, float, str | None], None]
# A progress message is a line for people to read, kept whole up to this size.
PROGRESS_MESSAGE_MAX_BYTES = 4096


class JobContext:
    """The running job's id and attempt, progress reporting, the cancellation flag, and for a
    transactional handler its transaction (`tx`)."""

    def __init__(
        self,
        job_id: int,
        attempt: int,
        *,
        progress_sink: ProgressSink | None = None,
        cancelled: Callable[[], bool] | None = None,
        tx: Any = None,
    ) -> None:
        self._tx = tx
        self.job_id = job_id
        self.attempt = attempt
        self._sink = progress_sink
        self._cancelled = cancelled
        self.logger = logging.LoggerAdapter(
            logging.getLogger("jobfleet.job"), {"job": job_id, "attempt": attempt}
        )

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is (0.0 to 1.0; NaN counts as 0); cheap to call often, the
        last value wins. The message is cleaned of what PostgreSQL cannot store and cut to
        PROGRESS_MESSAGE_MAX_BYTES."""
        fraction = min(1.0, max(0.0, float(fraction)))  # max() keeps 0.0 over NaN
        if message is not None:
            message = clean_text(str(message), PROGRESS_MESSAGE_MAX_BYTES)
        if self._sink is not None:
            self._sink(self.job_id, self.attempt, fraction, message)

    @property
    def tx(self) -> Any:
        """A psycopg connection in an open transaction on the jobs database: what the handler
        writes there commits with the job's completion, or not at all
        (`@handler(..., transactional=True)`)."""
        if self._tx is None:
            raise RuntimeError(
                "ctx.tx is for transactional handlers: @handler(..., transactional=True)"
            )
        return self._tx

    def cancelled(self) -> bool:
        """True once cancellation of this job was asked for: stop soon and return."""
        return self._cancelled() if self._cancelled is not None else False

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id}, attempt={self.attempt})"
