"""The lone claim on libpq itself (supervisor/lone_claim.py): the rows psycopg would return,
psycopg's errors, and a connection never left with a statement in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest

import jobfleet
from jobfleet.settings import settings
from jobfleet.supervisor import lone_claim
from jobfleet.supervisor.database import DatabaseDown, ManagedConnection, StatementError
from jobfleet.supervisor.store import claim_statement
from tests.conftest import scalar

T = TypeVar("T")
TYPES = ["echo", "noop", "sleep.v2:x-y"]


def params(limit: int = 10, holder: str = "n1/lone", queues: list[str] | None = None) -> Any:
    return claim_statement(holder=holder, types=TYPES, queues=queues, limit=limit, lease_seconds=30)


def lane(db_url: str) -> ManagedConnection:
    """A connection as the lanes make theirs."""
    return ManagedConnection("lane-test", db_url, settings(), raw_json=True)


def run(db_url: str, work: Callable[[ManagedConnection], Awaitable[T]]) -> T:
    async def scenario() -> T:
        db = lane(db_url)
        try:
            return await work(db)
        finally:
            await db.close()

    return asyncio.run(scenario())


def test_its_rows_are_those_psycopg_returns(conn: psycopg.Connection[Any], db_url: str) -> None:
    """Column by column, NULLs and text beyond ASCII included: jobs claimed through psycopg on
    a lane's connection and through libpq come back alike."""
    payload = {"name": 'quote " back\\slash ü 😀', "n": [1, 2.5, None]}
    for _ in range(2):
        jobfleet.enqueue(conn, "sleep.v2:x-y", payload, timeout=2.5, queue="q:1", priority=3)
        jobfleet.enqueue(conn, "echo", None, priority=3)
    conn.execute(
        "UPDATE jobs SET trace_context = '{\"traceparent\": \"00-ab-cd-01\"}' WHERE type = 'echo'"
    )

    async def both(db: ManagedConnection) -> tuple[list[Any], list[Any]]:
        query, named = params(limit=2)

        async def through_psycopg(c: psycopg.AsyncConnection[Any]) -> list[Any]:
            cur = await c.execute(query, named, prepare=True)
            return await cur.fetchall()

        first = await db.run(through_psycopg)
        return first, await db.run(lambda c: lone_claim.claim(c, named))

    by_psycopg, by_libpq = run(db_url, both)

    def alike(rows: list[Any]) -> list[Any]:  # all but the ids and the seconds waited
        return sorted((r[1:7], r[8], type(r[0]), type(r[7])) for r in rows)

    assert len(by_libpq) == 2
    assert alike(by_libpq) == alike(by_psycopg)
    assert {r[6] for r in by_libpq} == {
        '{"n": [1, 2.5, null], "name": "quote \\" back\\\\slash ü 😀"}',
        "null",
    }
    assert sorted(r[8] or "" for r in by_libpq) == ["", '{"traceparent": "00-ab-cd-01"}']


def test_names_are_sent_as_an_array_whatever_they_hold(conn: psycopg.Connection[Any]) -> None:
    names = ["plain", "a,b", "{braces}", 'quote"d', "back\\slash", " spaced ", "NULL", "ü"]
    literal = lone_claim.text_array(names)
    assert literal is not None
    assert scalar(conn, "SELECT %s::text[]", (literal.decode(),)) == names
    assert lone_claim.text_array(None) is None
    assert lone_claim.text_array([]) == b"{}"
    with pytest.raises(psycopg.DataError, match="NUL"):
        lone_claim.text_array(["a\x00b"])


def test_a_nul_in_a_name_is_a_statement_error(db_url: str) -> None:
    """As psycopg refuses it: the lane logs a refused claim and goes on, the node stays up."""

    async def scenario(db: ManagedConnection) -> None:
        named = {**params()[1], "types": ["echo\x00"]}
        with pytest.raises(StatementError, match="NUL"):
            await db.run(lambda c: lone_claim.claim(c, named))

    run(db_url, scenario)


def test_the_parameters_are_encoded_once_per_batch_size() -> None:
    _, named = params(limit=7, queues=["q1", "q2"])
    first = lone_claim.params_of(named)
    assert first == [b"n1/lone", lone_claim.text_array(TYPES), b'{"q1","q2"}', b"7", b"30.0"]
    assert lone_claim.params_of(dict(named)) is first  # the same list, not encoded again
    assert lone_claim.params_of(params(limit=8)[1])[3] == b"8"


def test_a_refused_claim_raises_psycopgs_error_and_keeps_the_connection(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    jobfleet.enqueue(conn, "echo")

    async def scenario(db: ManagedConnection) -> tuple[int, list[Any]]:
        with pytest.raises(StatementError, match="LIMIT must not be negative") as refused:
            await db.run(lambda c: lone_claim.claim(c, params(limit=-1)[1]))
        assert isinstance(refused.value.__cause__, psycopg.errors.InvalidRowCountInLimitClause)
        kept = db.generation
        rows = await db.run(lambda c: lone_claim.claim(c, params()[1]))
        return db.generation - kept, rows

    new_connections, rows = run(db_url, scenario)
    assert new_connections == 0  # the same connection claimed next
    assert [r[1] for r in rows] == ["echo"]


def test_a_statement_gone_from_the_session_is_prepared_again(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """psycopg deallocates every prepared statement of a session after a rollback (the
    control connection runs transactions, and lone claims): the next claim prepares the
    statement again and claims, on the same connection, with no error."""
    jobfleet.enqueue_many(conn, "echo", [None, None, None])
    ours = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'jobfleet_lone_claim'"

    async def prepared(c: psycopg.AsyncConnection[Any]) -> int:
        return int((await (await c.execute(ours)).fetchone() or [0])[0])

    async def rolled_back(c: psycopg.AsyncConnection[Any]) -> None:
        await c.execute("SELECT 1", prepare=True)  # psycopg has a statement of its own too
        async with c.transaction(force_rollback=True):
            await c.execute("SELECT 1")

    async def scenario(db: ManagedConnection) -> list[int]:
        claimed = [len(await db.run(lambda c: lone_claim.claim(c, params(limit=1)[1])))]
        generation = db.generation
        await db.run(rolled_back)
        before = await db.run(prepared)
        claimed.append(len(await db.run(lambda c: lone_claim.claim(c, params(limit=1)[1]))))
        await db.run(lambda c: c.execute("DEALLOCATE ALL"))
        claimed.append(len(await db.run(lambda c: lone_claim.claim(c, params(limit=1)[1]))))
        return [*claimed, before, await db.run(prepared), db.generation - generation]

    # Claimed one each time; gone after the rollback, there again after; one connection.
    assert run(db_url, scenario) == [1, 1, 1, 0, 1, 0]


def test_notifications_read_during_a_claim_reach_the_handler(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """The control connection claims too while the node is busy: a notification libpq reads
    during its claim is handed on then, not left until the next statement or wait."""
    jobfleet.enqueue(conn, "echo")
    heard: list[str] = []

    async def scenario() -> tuple[list[str], int]:
        db = ManagedConnection(
            "control-test",
            db_url,
            settings(),
            raw_json=True,
            on_notify=lambda n: heard.append(n.payload),
        )
        try:
            listener = await db.run(itself)
            await listener.execute("LISTEN jobfleet_test")
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
                claiming = asyncio.ensure_future(db.run(lambda c: lone_claim.claim(c, params()[1])))
                while not scalar(conn, WAITING, (listener.info.backend_pid,)):
                    await asyncio.sleep(0.01)  # polls; the test's timeout bounds it
                conn.execute("NOTIFY jobfleet_test, 'during the claim'")
            rows = await claiming
            return list(heard), len(rows)
        finally:
            await db.close()

    assert asyncio.run(scenario()) == (["during the claim"], 1)


def test_a_claim_cancelled_midway_is_cancelled_in_the_server(
    conn: psycopg.Connection[Any], db_url: str
) -> None:
    """Cancelled while the server works (here: waits for a lock), the claim is cancelled
    there too: its job stays queued and the connection idle, ready for the next claim."""
    jobfleet.enqueue(conn, "echo")

    async def scenario(db: ManagedConnection) -> tuple[str, int, list[Any]]:
        lane_conn = await db.run(itself)
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            claiming = asyncio.ensure_future(lone_claim.claim(lane_conn, params()[1]))
            while not scalar(conn, WAITING, (lane_conn.info.backend_pid,)):
                await asyncio.sleep(0.01)  # polls; the test's timeout bounds it
            claiming.cancel()
            with pytest.raises(asyncio.CancelledError):
                await claiming
            status = lane_conn.info.transaction_status.name
        generation = db.generation
        rows = await db.run(lambda c: lone_claim.claim(c, params()[1]))
        return status, db.generation - generation, rows

    status, new_connections, rows = run(db_url, scenario)
    assert status == "IDLE"
    assert new_connections == 0
    assert [(r[1], r[4]) for r in rows] == [("echo", 1)]  # its first attempt: none was lost


WAITING = "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"


async def itself(c: psycopg.AsyncConnection[Any]) -> psycopg.AsyncConnection[Any]:
    return c


def test_a_lost_connection_is_database_down(conn: psycopg.Connection[Any], db_url: str) -> None:
    async def scenario(db: ManagedConnection) -> tuple[int, list[Any]]:
        await db.run(lambda c: lone_claim.claim(c, params()[1]))
        pid = (await db.run(itself)).info.backend_pid
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseDown):
            await db.run(lambda c: lone_claim.claim(c, params()[1]))
        generation = db.generation
        db.retry_at = 0.0
        jobfleet.enqueue(conn, "echo")
        rows = await db.run(lambda c: lone_claim.claim(c, params()[1]))
        return db.generation - generation, rows

    new_connections, rows = run(db_url, scenario)
    assert new_connections == 1
    assert [r[1] for r in rows] == ["echo"]
