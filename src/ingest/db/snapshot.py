"""Two pooled connections reading one snapshot, so two statements of one read can run at once.

The first connection opens a REPEATABLE READ transaction and exports its snapshot; the second imports it
(`SET TRANSACTION SNAPSHOT`), so both see exactly the same committed data, as two statements of one
transaction would. The second connection is only borrowed when the pool has one free at once: waiting
for it could hold the first while every other connection waits the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from ingest.db.rows import scalar

# How long to wait for the second connection before reading on one alone.
SECOND_WAIT_S = 0.005


@contextmanager
def shared_snapshot(pool: ConnectionPool) -> Iterator[tuple[psycopg.Connection, psycopg.Connection | None]]:
    """Two connections in REPEATABLE READ transactions on one snapshot; the second is None when the pool
    has none free (then the first alone serves the read). Both transactions end on leaving."""
    with pool.connection() as first, first.transaction():
        first.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        second = _borrow(pool)
        if second is None:
            yield first, None
            return
        try:
            snapshot = scalar(first.execute("SELECT pg_export_snapshot()"))
            with second.transaction():
                second.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                second.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                yield first, second
        finally:
            pool.putconn(second)


def _borrow(pool: ConnectionPool) -> psycopg.Connection | None:
    try:
        return pool.getconn(timeout=SECOND_WAIT_S)
    except PoolTimeout:
        return None
