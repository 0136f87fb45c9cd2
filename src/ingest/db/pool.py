"""The connection pool every process uses (never one shared connection)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg import pq
from psycopg_pool import ConnectionPool

# A connection handed back less than this long ago, and healthy by its own account, is handed out again
# without a round trip to the server: on the hot path connections come back within milliseconds, and a
# server restart (what the check is for) takes longer than this.
RECENT_S = 0.5


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)  # vector, halfvec, sparsevec and bit adapters, text and binary


class _Checks:
    """The pool's check: a round trip (`SELECT` of nothing) unless the connection came back just now."""

    def __init__(self) -> None:
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()

    def returned(self, conn: psycopg.Connection) -> None:
        self._returned[conn] = time.monotonic()

    def check(self, conn: psycopg.Connection) -> None:
        back = self._returned.pop(conn, None)
        recent = back is not None and time.monotonic() - back < RECENT_S
        idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
        if recent and idle and conn.pgconn.status == pq.ConnStatus.OK:
            return
        ConnectionPool.check_connection(conn)


def open_pool(
    conninfo: str, *, max_size: int = 10, name: str = "ingest", timeout: float = 30.0
) -> ConnectionPool:
    checks = _Checks()
    pool = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        name=name,
        configure=_configure,
        # A server restart leaves dead connections in the pool; check each before handing it out (a
        # connection back from its last use just now is taken at its word).
        check=checks.check,
        reset=checks.returned,
        timeout=timeout,  # how long `connection()` waits; the API answers 503 past it
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


@contextmanager
def autocommit(pool: ConnectionPool, *, timeout: float | None = None) -> Iterator[psycopg.Connection]:
    """A pooled connection whose statements each commit on their own: no BEGIN and COMMIT round trips.
    For reads, and writes of one statement; `conn.transaction()` inside still makes a transaction.
    `timeout`: how long to wait for a connection (the pool's default when None)."""
    with pool.connection(timeout=timeout) as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.autocommit = False
