"""The row a statement always returns (an aggregate, a `RETURNING` of the row it just wrote, a lock
function): read it without a None check at every call, and fail loudly if the database broke the promise."""

from __future__ import annotations

from typing import Any, TypeVar

from psycopg import Cursor

Row = TypeVar("Row")


class NoRow(RuntimeError):
    """A statement that always returns a row returned none."""


def one(cursor: Cursor[Row]) -> Row:
    row = cursor.fetchone()
    if row is None:
        raise NoRow("the statement returned no row")
    return row


def scalar(cursor: Cursor[Any]) -> Any:
    """The first column of the one row."""
    return one(cursor)[0]
