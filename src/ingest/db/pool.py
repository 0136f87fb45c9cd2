"""The connection pool every process uses (never one shared connection)."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)  # vector, halfvec, sparsevec and bit adapters, text and binary


def open_pool(conninfo: str, *, max_size: int = 10, name: str = "ingest") -> ConnectionPool:
    pool = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        name=name,
        configure=_configure,
        # A server restart leaves dead connections in the pool; check each before handing it out.
        check=ConnectionPool.check_connection,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool
