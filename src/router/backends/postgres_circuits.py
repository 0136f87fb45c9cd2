"""Circuits in PostgreSQL (the `circuits` table): changed under a row lock, so concurrent updates queue up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from psycopg_pool import ConnectionPool

from router.circuit import CLOSED, Circuit, State

T = TypeVar("T")

_COLUMNS = "state, failures, opened_at, probe_until, reason"


class PostgresCircuitStore:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def read(self, service: str) -> Circuit:
        with self._pool.connection() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM circuits WHERE service = %s", (service,)).fetchone()
        return CLOSED if row is None else Circuit(State(row[0]), *row[1:])

    def update(self, service: str, change: Callable[[Circuit], tuple[T, Circuit]]) -> T:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM circuits WHERE service = %s FOR UPDATE", (service,)
            ).fetchone()
            if row is None:
                raise ValueError(f"unknown service {service!r}")
            current = Circuit(State(row[0]), *row[1:])
            value, after = change(current)
            if after != current:
                conn.execute(
                    "UPDATE circuits SET state = %s, failures = %s, opened_at = %s, probe_until = %s,"
                    " reason = %s, updated_at = now() WHERE service = %s",
                    (
                        after.state.value,
                        after.failures,
                        after.opened_at,
                        after.probe_until,
                        after.reason,
                        service,
                    ),
                )
            return value
