"""What the supervisor and its children say to each other over their sockets: jobs out,
outcomes, progress and goodbyes back (framing in worker/protocol.py). Held by the worker pool
(pool.py); what comes back goes to the outbox, the tally and the dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import repeat
from typing import Any, cast

from jobfleet.completion import SuccessColumns, success_rows
from jobfleet.jobs import (
    SUCCESS_FINISHED,
    SUCCESS_STARTED,
    AttemptResult,
    ClaimedJob,
    Success,
    one_type_queue,
)
from jobfleet.log import get_logger
from jobfleet.supervisor.children import Child
from jobfleet.supervisor.dispatch import Dispatcher
from jobfleet.supervisor.outbox import Outbox
from jobfleet.supervisor.tally import Tally
from jobfleet.supervisor.waker import Waker
from jobfleet.worker import protocol
from jobfleet.worker.slots import SlotTable

log = get_logger("jobfleet.supervisor")


class ChildTalk:
    def __init__(
        self,
        node: str,
        slots: SlotTable,
        dispatcher: Dispatcher,
        outbox: Outbox,
        tally: Tally,
        waker: Waker,
        on_garbled: Callable[[Child, str], None],
    ) -> None:
        self.node = node
        self.on_garbled = on_garbled  # a child sent what cannot be read: it must go
        self.slots = slots
        self.dispatcher = dispatcher
        self.outbox = outbox
        self.tally = tally
        self.waker = waker

    async def read(self, child: Child) -> None:
        """Read the child's messages until its socket closes (it exited)."""
        reader, writer = await asyncio.open_unix_connection(sock=child.sock)
        child.writer = writer
        if self.slots.read(child.slot).drain:  # asked to leave before we could tell it
            self.send(child, (protocol.BYE,))
        try:
            while True:
                header = await reader.readexactly(protocol.HEADER.size)
                (size,) = protocol.HEADER.unpack(header)
                self._on_message(child, protocol.decode(await reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # a frame that does not decode, a message of no known shape
            # Whatever is in its socket now cannot be trusted: the child goes, and the job it
            # runs is recorded with this cause (never a reader that stopped in silence).
            self.on_garbled(child, f"{type(exc).__name__}: {exc}"[:300])
        finally:
            child.eof.set()

    def _on_message(self, child: Child, message: Any) -> None:
        kind = message[0]
        if kind == protocol.DONE:  # see protocol.done
            _, ids, seconds, columns, failures, committed = message
            child.reported += len(ids) + len(failures) + len(committed)
            if committed:
                self._count_committed(lambda job_id: child.assigned.pop(job_id, None), committed)
            doomed = child.kill.job.id if child.kill and child.kill.job else None
            assigned = child.assigned
            tally = self.tally
            if columns is not None:
                self._settle_successes(assigned, ids, seconds, columns, doomed)
            for failure in failures:
                job = assigned.pop(failure.job_id, None) if failure.job_id != doomed else None
                if job is not None:
                    failure.pid = child.pid
                    self.outbox.add_result(failure)
                    tally.observe_duration(
                        (job.type, job.queue),
                        (failure.finished_at - failure.started_at).total_seconds(),
                    )
            self.dispatcher.observe(seconds, failures)
            self.waker.wake()
        elif kind == protocol.LANE_DONE:
            _, successes, failures, committed = message
            self._on_beside_outcomes(child, successes, failures)
            if committed:
                self._count_committed(child.drop_beside, committed)
        elif kind == protocol.PROGRESS:
            _, job_id, attempt, fraction, text = message
            self.outbox.add_progress(job_id, attempt, fraction, text)
            job = child.held(job_id)
            if job is not None:
                self.tally.progress_updates[(job.type, job.queue)] += 1
        elif kind == protocol.BYE:
            log.debug(
                "worker leaving",
                extra={"node": self.node, "worker": child.pid, "reason": message[1]},
            )

    def _count_committed(
        self, take: Callable[[int], ClaimedJob | None], committed: list[Success]
    ) -> None:
        """Successes a transactional handler's worker wrote itself, with the handler's writes:
        counted, never written again."""
        for success in committed:
            job = take(success[0])
            if job is not None:
                key = (job.type, job.queue)
                self.tally.succeeded[key] += 1
                seconds = (success[SUCCESS_FINISHED] - success[SUCCESS_STARTED]) / 1e6
                self.tally.observe_duration(key, seconds)

    def _on_beside_outcomes(
        self, child: Child, successes: list[Success], failures: list[AttemptResult]
    ) -> None:
        """Outcomes of jobs run beside the child's main thread: few at a time, one by one."""
        doomed = child.kill.job.id if child.kill and child.kill.job else None
        tally = self.tally
        for success in successes:
            job_id = success[0]
            job = child.drop_beside(job_id) if job_id != doomed else None
            if job is None:
                continue  # settled when its child is reaped, or already otherwise
            self.outbox.add_success(success)
            key = (job.type, job.queue)
            tally.succeeded[key] += 1
            tally.observe_duration(
                key, (success[SUCCESS_FINISHED] - success[SUCCESS_STARTED]) / 1e6
            )
        for failure in failures:
            if failure.job_id == doomed:
                continue
            job = child.drop_beside(failure.job_id)
            if job is None:
                continue
            failure.pid = child.pid
            self.outbox.add_result(failure)
            tally.observe_duration(
                (job.type, job.queue), (failure.finished_at - failure.started_at).total_seconds()
            )
        self.waker.wake()

    def _settle_successes(
        self,
        assigned: dict[int, ClaimedJob],
        ids: list[int],
        seconds: list[float],
        columns: SuccessColumns,
        doomed: int | None,
    ) -> None:
        """Successes to the outbox and the tally. By the batch, in C loops, as the child
        formatted them, when the batch is whole (every job ours, one job type and queue: the
        hot path); else one by one."""
        jobs: list[ClaimedJob | None] = list(map(assigned.pop, ids, repeat(None)))
        tally = self.tally
        # Whole: every job ours (a job is a non-empty tuple, so all() finds a None alone).
        whole = doomed is None and all(jobs)
        key = one_type_queue(cast(list[ClaimedJob], jobs)) if whole else None
        if key is not None:
            tally.succeeded[key] += len(ids)
            tally.observe_durations(key, seconds)  # sorts them: only their sum is used after
            self.outbox.add_formatted(ids, columns)
            return
        for success, job in zip(success_rows(columns), jobs, strict=True):
            if job is None:  # not ours (any more): its attempt was settled otherwise
                continue
            if job.id == doomed:  # its child is being killed over it: settled then, not twice
                assigned[job.id] = job
                continue
            self.outbox.add_success(success)
            key = (job.type, job.queue)
            tally.succeeded[key] += 1
            tally.observe_duration(
                key, (success[SUCCESS_FINISHED] - success[SUCCESS_STARTED]) / 1e6
            )

    def send(self, child: Child, message: Any) -> None:
        if child.writer is not None and not child.writer.is_closing():
            child.writer.write(protocol.encode(message))
