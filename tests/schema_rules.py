"""The rule that lets a previous release's nodes run on a migrated database: migrations are
additive. Read from the database itself (never a list of today's tables), so the rolling
upgrade test holds for whatever migrations a release brings."""

from __future__ import annotations

from typing import NamedTuple

import psycopg

# Columns of tables and views in the public schema (jobfleet_migrations is the migrator's own).
COLUMNS = (
    "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable = 'YES',"
    " c.column_default IS NOT NULL, t.table_type = 'VIEW'"
    " FROM information_schema.columns c JOIN information_schema.tables t"
    " USING (table_schema, table_name)"
    " WHERE c.table_schema = 'public' AND c.table_name <> 'jobfleet_migrations'"
)
# Functions by signature: a caller of the previous release names them with these arguments.
FUNCTIONS = (
    "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
)


class Column(NamedTuple):
    table: str
    name: str
    type: str
    nullable: bool
    has_default: bool
    in_view: bool


class Schema(NamedTuple):
    columns: dict[tuple[str, str], Column]
    functions: frozenset[str]


def read_schema(url: str) -> Schema:
    with psycopg.connect(url) as conn:
        columns = [Column(*row) for row in conn.execute(COLUMNS)]
        functions = frozenset(row[0] for row in conn.execute(FUNCTIONS))
    return Schema({(c.table, c.name): c for c in columns}, functions)


def breaking_changes(before: Schema, after: Schema) -> list[str]:
    """What a migration from `before` to `after` did that a node of the release before may not
    survive: a table, view, column or function gone, a column's type changed, a column that
    lost its nullability, or a new column in an existing table that an old INSERT, which
    does not name it, cannot fill (NOT NULL without a default). Empty when additive."""
    found = []
    old_tables = {table for table, _ in before.columns}
    for key, old in sorted(before.columns.items()):
        new = after.columns.get(key)
        where = f"{old.table}.{old.name}"
        if new is None:
            found.append(f"{where} is gone")
        elif new.type != old.type:
            found.append(f"{where} changed type from {old.type} to {new.type}")
        elif old.nullable and not new.nullable and not new.in_view:
            found.append(f"{where} became NOT NULL")
    for key, new in sorted(after.columns.items()):
        fills_itself = new.nullable or new.has_default or new.in_view
        if key not in before.columns and new.table in old_tables and not fills_itself:
            found.append(f"{new.table}.{new.name} is new, NOT NULL and has no default")
    found += [f"function {name} is gone" for name in sorted(before.functions - after.functions)]
    return found
