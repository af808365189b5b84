"""The supervisor's database hot path: LANES connections ('lanes') that each write the
outcomes waiting (one lane at a time) or else claim for the children's free room, less what
claims in flight will bring, and hand the claimed jobs to the children (through the pool).

Outcomes are written as soon as a lane is free, so batches grow with the rate by themselves;
claims run beside the writes, so PostgreSQL works on two statements at once whatever the mix.
A part the supervisor holds (supervisor.py); the control connection takes steps here too while
the node is busy. It reports to its owner through `on_change` (a step ended: the drain may be
done) and `on_burst_done` (a burst node found nothing left to run).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from jobfleet.log import get_logger
from jobfleet.settings import Settings
from jobfleet.supervisor import store
from jobfleet.supervisor.claims import (
    Claim,
    ClaimParams,
    DryClaims,
    claim_wants,
    claimed_by,
    pipeline_order,
    plan_claims,
    ran_dry,
    unlimited_counts,
)
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection, StatementError
from jobfleet.supervisor.limited import LimitedTypes
from jobfleet.supervisor.node import Node
from jobfleet.supervisor.outbox import Outbox, log_failures
from jobfleet.supervisor.pool import TICK_SECONDS, WorkerPool
from jobfleet.supervisor.tally import Tally
from jobfleet.supervisor.waker import Waker
from jobfleet.supervisor.write_timing import back_to_back, write_after, writes_beside

log = get_logger("jobfleet.supervisor")

LANES = 2

# The safety net behind NOTIFY: an idle node looks for work at most this often. Everything
# that makes a job ready says so (NOTIFY on enqueue, release, requeue of a lost attempt, DLQ
# retry; the soonest job scheduled for later by enqueue, and a retry's backoff to the node that
# failed it), so polling only covers what no one announced, such as a retry whose node died.
# JOBFLEET_IDLE_POLL_SECONDS caps it (5 s by default); the backoff starts at IDLE_POLL_MIN.
IDLE_POLL_MIN = 0.05
# A job announced to fall due in N seconds is claimed a little after, never before.
DUE_MARGIN_SECONDS = 0.01
# Due times remembered (the soonest ones); any beyond are left to the safety net.
DUE_TIMES_KEPT = 1000
# After a statement the database refused (not a lost connection), wait this long before the
# next try: the error is logged each time, and a tight loop would flood the log.
STATEMENT_ERROR_PAUSE_SECONDS = 1.0
FAILED_OUTCOMES = frozenset(("failed", "crashed", "timed_out"))


class Lanes:
    def __init__(
        self,
        node: Node,
        config: Settings,
        url: str,
        *,
        holder: str,
        burst: bool,
        pool: WorkerPool,
        outbox: Outbox,
        tally: Tally,
        waker: Waker,
        on_change: Callable[[], None],
        on_burst_done: Callable[[str], None],
    ) -> None:
        self.node = node
        self.config = config
        self.holder = holder  # this run's lease holder (locked_by)
        self.burst = burst
        self.pool = pool
        self.outbox = outbox
        self.tally = tally
        self.waker = waker  # room in the children, outcomes to write, new work, state changes
        self.on_change = on_change
        self.on_burst_done = on_burst_done
        self.dbs = [
            ManagedConnection(f"lane-{n + 1}", url, config, raw_json=True) for n in range(LANES)
        ]
        self.flushing = 0  # writes in flight (more than one: see WRITE_BESIDE_MIN)
        self.queue_dry = False  # the last claims left nothing ready behind (claims.ran_dry)
        # Jobs asked for by claims in flight: for the main threads' types (""), and for each
        # async or threaded type.
        self.claiming: Counter[str] = Counter()
        self.idle_wait = IDLE_POLL_MIN
        self.next_poll = 0.0
        self.work_hint = True  # there may be work: claim without waiting out the idle backoff
        self.due_times: list[float] = []  # when known jobs fall due, soonest first
        self.due_unknown = True  # jobs scheduled before we listened: ask when the queue is dry
        self.db_clock_offset = 0.0  # the database's clock less ours (see the control loop)
        # Bumped by more_work_may_exist(); a burst node's look found nothing elsewhere as of
        # clear_epoch (see _burst_done).
        self.work_epoch, self.clear_epoch = 0, -1
        self.finished_ok = self.finished_bad = self.finished_cancelled = 0
        self.late_results = 0
        self.limits = LimitedTypes()  # the node's types with limits, and those held back
        self.claim_params = ClaimParams(holder, node.queues, config.lease_seconds)
        self.dry = DryClaims()  # claims left out for a while: they came back empty (claims.py)
        self.dry_due_seen = 0.0  # the last due time that ended those pauses
        self.main_claimed = False  # a round has claimed for the main threads (plan_claims)
        self.news_at = 0.0  # when work was last announced (more_work_may_exist)
        self.back_to_back = False  # and whether it came back to back (write_timing.back_to_back)

    def _fields(self, **extra: Any) -> dict[str, Any]:
        return {"node": self.node.name, **extra}

    async def close(self) -> None:
        for db in self.dbs:
            await db.close()

    async def lane_loop(self, db: ManagedConnection) -> None:
        """One lane's life: the node's database work, else wait to be woken (outcomes, room
        in the children, new work), for the idle backoff, or for outcomes to be due."""
        while True:
            if not await self.lane_step(db):
                now = time.monotonic()
                pause = self.next_poll - now
                release = self.limits.next_release()
                if release is not None:  # a type held back by its limits may open first
                    pause = min(pause, release - now)
                if self.outbox and not self.flushing:
                    pause = min(pause, self._write_after(now))
                await self.waker.wait(db.name, pause if pause > 0 else TICK_SECONDS)
                self.on_change()

    def _write_after(self, now: float) -> float:
        """Seconds until the outcomes waiting are due to be written; 0: now (see
        write_timing.write_after)."""
        outbox, pool = self.outbox, self.pool
        return write_after(
            now,
            outbox.since,
            outbox.latest or outbox.since,
            only_successes=outbox.only_successes,
            accepting=pool.accepting,
            running=pool.holds_jobs(),
            mean_seconds=pool.dispatcher.mean_seconds,
            news_at=self.news_at,
            back_to_back=self.back_to_back,
        )

    async def lane_step(self, db: ManagedConnection) -> bool:
        """Do one piece of the node's database work on `db`: write the outcomes that wait
        (one lane at a time), else claim for the children's free room. False: none to do.
        The control connection (maintenance) takes steps too while the node is busy."""
        if self.work_hint:  # NOTIFY, or jobs we put back: look now, whatever the backoff
            self.work_hint, self.idle_wait, self.next_poll = False, IDLE_POLL_MIN, 0.0
            self.dry.clear()
        try:
            # A node that runs nothing claims before it writes: the claim is on the path of
            # the next job's start, the write holds up nobody.
            first = self._claims_first()
            claims = self._claim_statements() if first else []
            if claims:
                await self._claim(db, claims)
            elif self.outbox and not self.flushing and self._write_after(time.monotonic()) <= 0:
                await self._flush(db)
            elif self.limits.stale:
                await db.run(self._refresh_limits)
            elif (beside := self._writes_beside()) and self.queue_dry:
                # The queue ran dry at the last claim: the outcomes before a claim that would
                # most likely find nothing (a drain's last ones waited 20-25 ms for one).
                await self._flush(db)
            elif not first and (claims := self._claim_statements()):
                await self._claim(db, claims)
            elif beside:
                await self._flush(db)
            else:
                return False
        except DatabaseDown:
            await asyncio.sleep(min(1.0, max(0.05, db.retry_at - time.monotonic())))
        except StatementError as exc:
            # Outcomes isolate their own bad rows (outbox.py); this is a claim or a look for
            # work that PostgreSQL refused. Not a reason to stop the node: say so, count it,
            # and try again after a pause rather than in a tight loop.
            self.tally.statement_errors["claim"] += 1
            log.error(
                "a claim was refused by the database; trying again shortly",
                extra=self._fields(connection=db.name, reason=str(exc)),
            )
            await asyncio.sleep(STATEMENT_ERROR_PAUSE_SECONDS)
        self.on_change()
        return True

    def _claims_first(self) -> bool:
        """Claim before writing: outcomes wait, and the node runs nothing, claims nothing,
        needs no fresh look at its limits (which comes before a claim), and may find work:
        not when the last claim ran the queue dry and nothing was announced since."""
        return (
            bool(self.outbox)
            and not self.queue_dry
            and not self.limits.stale
            and not self.claims_in_flight()
            and not self.pool.holds_jobs()
        )

    def _writes_beside(self) -> bool:
        """Write beside the write in flight (write_timing.writes_beside)."""
        return writes_beside(
            writing=self.flushing,
            waiting=self.outbox.waiting,
            queue_dry=self.queue_dry,
            limited=bool(self.limits.types) or self.limits.stale,
        )

    def more_work_may_exist(self, *, wake: bool = True) -> None:
        """New work was announced, or jobs went back to the queue (retries, releases, reaped
        leases): claim now, whatever the backoff, and forget that a burst node found
        nothing left elsewhere. `wake`: wake the lanes to claim (False: the caller claims)."""
        self.news_at = time.monotonic()
        self.back_to_back = not self.burst and back_to_back(
            self.news_at, self.outbox.latest, self.pool.holds_jobs()
        )
        self.work_hint = True
        self.queue_dry = False
        self.work_epoch += 1
        self.limits.new_work()  # a keyed type's new key may be among them
        if wake:
            self.waker.wake()

    def limits_changed(self) -> None:
        """A type's limits changed somewhere (or may have): read them again, then claim."""
        self.limits.stale = True
        self.more_work_may_exist()

    async def _refresh_limits(self, conn: Any) -> None:
        self.limits.refreshed(await store.node_limits(conn, self.node.types))

    def work_due_at(self, epoch: float) -> None:
        """A job this node may run falls due at `epoch` on the database's clock."""
        self.work_due_in(epoch - (time.time() + self.db_clock_offset))

    def work_due_in(self, seconds: float) -> None:
        """A job this node may run falls due in `seconds`: look for work then, whatever the
        idle backoff says."""
        due = time.monotonic() + max(0.0, seconds) + DUE_MARGIN_SECONDS
        bisect.insort(self.due_times, due)
        del self.due_times[DUE_TIMES_KEPT:]
        if due < self.next_poll:
            self.next_poll = due
            self.waker.wake()  # lanes waiting out a longer backoff recompute their pause

    def _claim_statements(self) -> list[Claim]:
        """This round's claims (claims.py); empty: no room, or an idle backoff not yet over
        and no held type due."""
        now = time.monotonic()
        due = self.due_times
        if due and self.dry_due_seen < due[0] <= now:  # a job announced for now: any type
            self.dry_due_seen = due[0]  # once per due time (the list empties when idle)
            self.dry.clear()
        return plan_claims(
            self.claim_params,
            self.pool,
            self.claiming,
            self.limits,
            now,
            now < self.next_poll,
            self.dry.now_dry(now),
            main_first=not self.main_claimed,
        )

    async def _claim(self, db: ManagedConnection, claims: list[Claim]) -> None:
        wants = Counter(dict(claim_wants(claims)))
        self.claiming.update(wants)
        if "" in wants:
            self.main_claimed = True
        ordered = pipeline_order(claims)
        epoch = self.work_epoch
        try:
            rows = await db.run(
                partial(
                    store.run_claims,
                    statements=[s for _, group, _ in ordered for s in group],
                    plain=not any(is_limited for _, _, is_limited in ordered),
                )
            )
        finally:
            self.claiming.subtract(wants)
        now = time.monotonic()
        jobs = claimed_by(ordered, rows, self.limits, self.tally, now)
        busy = self.pool.holds_jobs() or bool(self.claims_in_flight())  # besides these jobs
        # The children first: they start on the other core while this one keeps count.
        dispatched = self.pool.hand_out(jobs)
        self.queue_dry = self.work_epoch == epoch and ran_dry(ordered, rows)
        self.dry.after_round(
            unlimited_counts(ordered, rows), claimed_any=bool(jobs), busy=busy, now=now
        )
        # A short claim means the queue ran dry: a burst node looks elsewhere now, while its
        # last jobs run, and is done once they are written. (Not while another lane claims:
        # the rows that claim holds would still look ready. Jobs a limit holds back are
        # ready jobs to that look: a burst node waits for them.)
        if (
            self.burst
            and len(jobs) < wants.total()
            and not self.claims_in_flight()
            and await self._burst_done(db)
        ):
            self.on_burst_done("burst: nothing left to run")
            return
        if dispatched:
            self.idle_wait = IDLE_POLL_MIN
            # After a claim that ran dry, looking again at once finds nothing: the next look
            # waits for news or the idle poll. Taken at once, it ran beside the job's start
            # and the next enqueue, on a machine of 2 cores (issue 17: idle latency). Unless
            # work was announced while the claim ran: it may have committed after the claim's
            # snapshot, and another lane may have taken the hint and found no room.
            self.next_poll = now + IDLE_POLL_MIN if self.queue_dry else 0.0
            return
        due = self.due_times
        while due and due[0] <= now:  # those jobs were claimed, by us or another node
            del due[0]
            self.due_unknown = True  # the next may not have been announced (or not to us)
        if self.due_unknown and not self.burst:  # nothing ready: when is the next job due?
            self.due_unknown = False
            soonest = await db.run(partial(store.soonest_scheduled, node=self.node))
            if soonest is not None:
                self.work_due_in(soonest)
        if now < self.next_poll:  # a round for held types only: the backoff stands
            return
        self.next_poll = min(now + self.idle_wait, due[0]) if due else now + self.idle_wait
        if not self.in_flight():  # the backoff grows only while this node is idle too
            self.idle_wait = min(self.idle_wait * 2, self.config.idle_poll_seconds)

    def in_flight(self) -> bool:
        """Jobs held by children, outcomes waiting or being written, claims under way."""
        return (
            self.pool.holds_jobs()
            or bool(self.outbox)
            or self.flushing > 0
            or bool(self.claims_in_flight())
        )

    def claims_in_flight(self) -> int:
        return sum(self.claiming.values())

    async def _flush(self, db: ManagedConnection) -> None:
        """Write what waits: outcomes, releases, progress."""
        self.flushing += 1
        try:
            flushed = await self.outbox.flush(db, self.node.name, self.config, holder=self.holder)
        finally:
            self.flushing -= 1
        cancelled = sum(1 for f in flushed.failures if f.outcome == "cancelled")
        self.finished_ok += flushed.succeeded
        self.finished_bad += len(flushed.failures) - cancelled
        self.finished_cancelled += cancelled
        if flushed.statement_errors:
            self.tally.statement_errors["record"] += flushed.statement_errors
        log_failures(self.node.name, flushed.failures)
        if self.limits.poll and (flushed.succeeded or flushed.failures):
            self.limits.jobs_ended()  # a full max_running of a type may have room now
        if flushed.requeued:  # a retry or a released job may be ready at once
            self.more_work_may_exist()
        elif self.burst and not self.in_flight():
            # A burst node that wrote its last outcomes: done yet? Asked at once, by a lane
            # woken for it: the one that wrote may be the control connection, and the lanes
            # waited out the idle poll before looking (50 ms more of a drain's start to exit).
            self.work_hint = True
            self.waker.wake()
        tally = self.tally
        for failed in flushed.failed_rows:
            if failed.due_in is not None and failed.due_in > 0:
                self.work_due_in(failed.due_in)  # a retry after its backoff: claim it then
            if failed.outcome in FAILED_OUTCOMES:
                tally.failed[(failed.type, failed.queue, failed.outcome)] += 1
            tally.count_after_attempt((failed.type, failed.queue), failed.state)
        if flushed.late:
            tally.late_completions += flushed.late
            self.late_results += flushed.late
            log.warning(
                "late results dropped: their attempts had been replaced",
                extra=self._fields(late=flushed.late),
            )

    async def _burst_done(self, db: ManagedConnection) -> bool:
        """Done when nothing is in flight here and a look found nothing ready or running
        elsewhere, with nothing since that could have made more (`more_work_may_exist`).
        The look is taken at the first short claim, while the node's last jobs still run,
        so it leaves as soon as their outcomes are written."""
        if self.clear_epoch != self.work_epoch:
            epoch = self.work_epoch
            if await db.run(partial(store.nothing_elsewhere, node=self.node, holder=self.holder)):
                self.clear_epoch = epoch
        return self.clear_epoch == self.work_epoch and not self.in_flight()
