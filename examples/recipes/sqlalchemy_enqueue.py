"""Enqueue from SQLAlchemy: `jobfleet.enqueue` on the session's own psycopg connection, so a
job commits with the session's writes, or vanishes with them on rollback.

    DATABASE_URL=postgresql://app@db/shop python sqlalchemy_enqueue.py

The engine's URL names the psycopg 3 dialect, `postgresql+psycopg://` (jobfleet depends on
psycopg 3); `session.connection().connection.driver_connection` is then the psycopg.Connection
jobfleet takes. Prints what it did as JSON; tests/test_example_app.py runs it in a fresh venv.
"""

from __future__ import annotations

import json
import os

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Engine, Text, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import jobfleet


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "recipe_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(Text)


class PaymentDeclined(Exception):
    pass


def engine_for(url: str) -> Engine:
    """The engine for a libpq URL; in an app, a literal "postgresql+psycopg://app@db/shop"."""
    params = conninfo_to_dict(url)  # host and port go in the query: a socket folder is a host
    return create_engine(
        URL.create(
            "postgresql+psycopg",
            username=params.pop("user", None),
            password=params.pop("password", None),
            database=params.pop("dbname", None),
            query={key: str(value) for key, value in params.items()},
        )
    )


def place_order(engine: Engine, item: str, declined: bool = False) -> dict[str, int]:
    """An order and its receipt job in one transaction: both commit, or neither is written."""
    placed: dict[str, int] = {}
    with Session(engine) as session, session.begin():  # commits at the end, or rolls back
        order = Order(item=item)
        session.add(order)
        session.flush()  # the INSERT now, for the order's id
        placed["order"] = order.id
        # The session's connection, in its transaction, as the psycopg.Connection under it.
        conn = session.connection().connection.driver_connection
        placed["job"] = jobfleet.enqueue(conn, "send_receipt", {"order": order.id})
        if declined:  # raised inside begin(): the session rolls back the order and the job
            raise PaymentDeclined(placed)
    return placed


def main() -> None:
    engine = engine_for(os.environ["DATABASE_URL"])
    Base.metadata.create_all(engine)
    committed = place_order(engine, "book")
    try:
        place_order(engine, "pen", declined=True)
    except PaymentDeclined as exc:
        rolled_back = exc.args[0]
    with Session(engine) as session:
        conn = session.connection().connection.driver_connection
        shown = jobfleet.get(committed["job"], conn=conn)
    print(json.dumps({"committed": committed, "rolled_back": rolled_back, "shown": shown}))


if __name__ == "__main__":
    main()
