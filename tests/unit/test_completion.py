"""The successes' columns as complete_batch reads them (common/completion.py): a worker
formats its batch, the supervisor joins batches and loose rows into one statement, and a
batch turns back into its rows when it must be written apart."""

from __future__ import annotations

from jobfleet.completion import success_columns, success_rows, success_statement
from jobfleet.jobs import Success

ROWS: list[Success] = [
    (10, 1, "null", 4242, 1_700_000_000_000_000, 1_700_000_000_000_250),
    (11, 3, '{"text": "a, b", "list": [1, 2]}', None, 5, 6),  # a comma inside a result
    (9_223_372_036_854_775_807, 2_147_483_647, '"\\u00e9"', 1, 0, 0),  # the largest numbers
]


def test_columns_and_back() -> None:
    columns = success_columns(ROWS)
    assert columns.ids == "10,11,9223372036854775807"
    assert columns.pids == "4242,,1"  # no pid: an empty field
    assert columns.results == [r[2] for r in ROWS]
    assert success_rows(columns) == ROWS
    assert success_rows(success_columns(ROWS[1:2])) == ROWS[1:2]  # one row, no pid


def test_formatted_batches_and_loose_rows_make_the_statement_of_all_their_rows() -> None:
    query, together = success_statement(
        "n", ROWS[2:], holder="h", formatted=[success_columns(ROWS[:1]), success_columns(ROWS[1:2])]
    )
    assert (query, together) == success_statement("n", ROWS, holder="h")
    assert together["results"] == "[" + ",".join(r[2] for r in ROWS) + "]"
    assert success_statement("n", formatted=[success_columns(ROWS)]) == success_statement("n", ROWS)
