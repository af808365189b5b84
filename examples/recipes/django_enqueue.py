"""Enqueue from Django: `jobfleet.enqueue` on Django's own connection inside
`transaction.atomic()`, so a job commits with the order written beside it, or vanishes with it.

    DATABASE_URL=postgresql://app@db/shop python django_enqueue.py

Django 4.2 or newer talks to PostgreSQL with psycopg 3 when it is installed (jobfleet depends
on it), and `django.db.connection.connection` is then the psycopg.Connection jobfleet takes.
Prints what it did as JSON; tests/test_example_app.py runs it in a fresh venv.
"""

from __future__ import annotations

import json
import os
from typing import Any

import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict


def configure(url: str) -> None:
    """Django set up in code for this script; in an app, the same DATABASES in settings.py."""
    params: dict[str, Any] = conninfo_to_dict(url)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.pop("dbname"),
                "USER": params.pop("user", ""),
                "PASSWORD": params.pop("password", ""),
                "HOST": params.pop("host", ""),
                "PORT": params.pop("port", ""),
                "OPTIONS": params,  # the rest (sslmode, ...) goes to psycopg as it is
            }
        },
        USE_TZ=True,
    )
    django.setup()


configure(os.environ["DATABASE_URL"])

from django.db import connection, transaction  # noqa: E402  (after settings, as Django needs)

import jobfleet  # noqa: E402


class PaymentDeclined(Exception):
    pass


def place_order(item: str, declined: bool = False) -> dict[str, int]:
    """An order and its receipt job in one transaction: both commit, or neither is written."""
    placed: dict[str, int] = {}
    with transaction.atomic():
        with connection.cursor() as cur:  # the app's own write (a model's save() alike)
            cur.execute("INSERT INTO recipe_orders (item) VALUES (%s) RETURNING id", [item])
            placed["order"] = cur.fetchone()[0]
        # Inside atomic() Django's connection is open and in the transaction: its
        # `.connection` is the psycopg.Connection, and the job joins that transaction.
        placed["job"] = jobfleet.enqueue(
            connection.connection, "send_receipt", {"order": placed["order"]}
        )
        if declined:  # raised inside atomic(): Django rolls back the order and the job
            raise PaymentDeclined(placed)
    return placed


def main() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS recipe_orders (id bigserial PRIMARY KEY, item text)"
        )
    committed = place_order("book")
    try:
        place_order("pen", declined=True)
    except PaymentDeclined as exc:
        rolled_back = exc.args[0]
    # Outside atomic() Django is in autocommit: open the connection first (it may not be yet),
    # and the read (or an enqueue) stands on its own.
    connection.ensure_connection()
    shown = jobfleet.get(committed["job"], conn=connection.connection)
    print(json.dumps({"committed": committed, "rolled_back": rolled_back, "shown": shown}))


if __name__ == "__main__":
    main()
