"""Embedding spaces and their vector tables. Vectors go in with binary COPY: this is the hot path.

Each (model, dimensions) gets its own table `vectors_<id>` with an HNSW cosine index, so vectors of
different models never meet in one search. Vectors are stored as `halfvec`: half the bytes, twice the
dimensions pgvector can index (4,000), at a recall cost too small to measure on text embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql

# Serialises creation of a space's table across processes (CREATE TABLE IF NOT EXISTS can still race).
SPACE_LOCK_KEY = 7_310_425_119
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


@dataclass(frozen=True, slots=True)
class Space:
    id: int
    model: str
    dimensions: int
    simulated: bool
    table_name: str

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.table_name)


def find_space(conn: psycopg.Connection, model: str, dimensions: int) -> Space | None:
    row = conn.execute(
        "SELECT id, model, dimensions, simulated, table_name FROM embedding_spaces WHERE model = %s AND dimensions = %s",
        (model, dimensions),
    ).fetchone()
    return Space(*row) if row else None


def ensure_space(conn: psycopg.Connection, model: str, dimensions: int, *, simulated: bool) -> Space:
    """The space for (model, dimensions), created with its table and index on first use."""
    space = find_space(conn, model, dimensions)
    if space is not None:
        return space
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SPACE_LOCK_KEY,))
        space = find_space(conn, model, dimensions)
        if space is not None:
            return space
        space_id = conn.execute(
            "INSERT INTO embedding_spaces (model, dimensions, simulated, table_name)"
            " VALUES (%s, %s, %s, '') RETURNING id",
            (model, dimensions, simulated),
        ).fetchone()[0]
        name = f"vectors_{space_id}"
        conn.execute("UPDATE embedding_spaces SET table_name = %s WHERE id = %s", (name, space_id))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {t} (chunk_id bigint PRIMARY KEY REFERENCES chunks ON DELETE CASCADE,"
                " embedding halfvec({d}) NOT NULL)"
            ).format(t=sql.Identifier(name), d=sql.Literal(dimensions))
        )
        conn.execute(
            sql.SQL(
                "CREATE INDEX {i} ON {t} USING hnsw (embedding halfvec_cosine_ops) WITH (m = {m}, ef_construction = {ef})"
            ).format(
                i=sql.Identifier(f"{name}_hnsw"),
                t=sql.Identifier(name),
                m=sql.Literal(HNSW_M),
                ef=sql.Literal(HNSW_EF_CONSTRUCTION),
            )
        )
    return Space(space_id, model, dimensions, simulated, name)


def write(conn: psycopg.Connection, space: Space, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
    """Store one vector per chunk, replacing any earlier one (a redelivered batch writes once)."""
    if len(chunk_ids) != len(vectors):
        raise ValueError("one vector per chunk")
    if vectors.ndim != 2 or vectors.shape[1] != space.dimensions:
        raise ValueError(f"vectors must have {space.dimensions} dimensions for {space.model}")
    ids = list(chunk_ids)
    conn.execute(sql.SQL("DELETE FROM {t} WHERE chunk_id = ANY(%s)").format(t=space.table), (ids,))
    halves = vectors.astype(np.float16)
    with conn.cursor().copy(
        sql.SQL("COPY {t} (chunk_id, embedding) FROM STDIN (FORMAT BINARY)").format(t=space.table)
    ) as copy:
        copy.set_types(["int8", "halfvec"])
        for chunk_id, vector in zip(ids, halves, strict=True):
            copy.write_row((chunk_id, HalfVector(vector)))
