"""The additive-migrations rule (tests/schema_rules.py) on schemas written out by hand."""

from __future__ import annotations

from typing import Any

from tests.schema_rules import Column, Schema, breaking_changes


def column(table: str = "jobs", name: str = "x", **changes: Any) -> Column:
    return Column(table, name, "integer", True, False, False)._replace(**changes)


def schema(*columns: Column, functions: tuple[str, ...] = ()) -> Schema:
    return Schema({(c.table, c.name): c for c in columns}, frozenset(functions))


BEFORE = schema(
    column(name="id", nullable=False),
    column(name="note", type="text"),
    column("dead_jobs", "id", in_view=True),
    functions=("f(integer)",),
)


def test_new_tables_nullable_or_defaulted_columns_and_functions_are_additive() -> None:
    after = schema(
        *BEFORE.columns.values(),
        column(name="limit_key", type="text"),
        column(name="weight", nullable=False, has_default=True),
        column("new_table", "id", nullable=False),  # a new table: no old INSERT reaches it
        column("dead_jobs", "extra", nullable=False, in_view=True),
        functions=("f(integer)", "g(text)"),
    )
    assert breaking_changes(BEFORE, after) == []


def test_what_an_old_node_cannot_survive_is_named() -> None:
    after = schema(
        column(name="id", nullable=False, type="bigint"),
        column(name="note", type="text", nullable=False),
        column(name="owner", nullable=False),
        functions=("f(bigint)",),
    )
    assert breaking_changes(BEFORE, after) == [
        "dead_jobs.id is gone",
        "jobs.id changed type from integer to bigint",
        "jobs.note became NOT NULL",
        "jobs.owner is new, NOT NULL and has no default",
        "function f(integer) is gone",
    ]
