"""Embedding spaces and their vector tables. Vectors go in with binary COPY: this is the hot path.

Each (model, dimensions) gets its own table `vectors_<id>` with an HNSW cosine index, so vectors of
different models never meet in one search. While a large backlog loads, the index can be dropped and
built again after in one pass (`defer_index`, `build_index`; the decision is in ingest/loading.py). Vectors are stored as `halfvec`: half the bytes, twice the
dimensions pgvector can index (4,000), at a recall cost too small to measure on text embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql

from ingest.db.rows import scalar

# Serialises creation of a space's table across processes (CREATE TABLE IF NOT EXISTS can still race).
SPACE_LOCK_KEY = 7_310_425_119
# Serialises dropping and building one space's index: this plus the space's id.
INDEX_LOCK_BASE = 7_310_426_000_000
_SPACE_COLUMNS = "id, model, dimensions, simulated, table_name, index_deferred_at, index_kind"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


@dataclass(frozen=True, slots=True)
class Space:
    id: int
    model: str
    dimensions: int
    simulated: bool
    table_name: str
    # Since when the HNSW index is dropped for a backlog to load (searches scan meanwhile); None: live.
    index_deferred_at: datetime | None = None
    index_kind: str = "halfvec"  # or "binary": HNSW over bit(d) quantizations, re-ranked exactly

    @property
    def index_deferred(self) -> bool:
        return self.index_deferred_at is not None

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.table_name)


def find_space(conn: psycopg.Connection, model: str, dimensions: int) -> Space | None:
    row = conn.execute(
        f"SELECT {_SPACE_COLUMNS} FROM embedding_spaces WHERE model = %s AND dimensions = %s",
        (model, dimensions),
    ).fetchone()
    return Space(*row) if row else None


def ensure_space(
    conn: psycopg.Connection, model: str, dimensions: int, *, simulated: bool, index_kind: str = "halfvec"
) -> Space:
    """The space for (model, dimensions), created with its table and index on first use (`index_kind`
    applies to a space made now; an existing space keeps its own)."""
    space = find_space(conn, model, dimensions)
    if space is not None:
        return space
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SPACE_LOCK_KEY,))
        space = find_space(conn, model, dimensions)
        if space is not None:
            return space
        space_id = scalar(
            conn.execute(
                "INSERT INTO embedding_spaces (model, dimensions, simulated, table_name, index_kind)"
                " VALUES (%s, %s, %s, '', %s) RETURNING id",
                (model, dimensions, simulated, index_kind),
            )
        )
        name = f"vectors_{space_id}"
        conn.execute("UPDATE embedding_spaces SET table_name = %s WHERE id = %s", (name, space_id))
        # Vectors stay in the row while it fits a page: at the default target (2 kB) a 1536-d halfvec went
        # to TOAST, and an exact scan of 20,000 read 62,600 buffers instead of 10,400 (docs/benchmarks.md).
        conn.execute(
            sql.SQL(
                "CREATE TABLE {t} (chunk_id bigint PRIMARY KEY REFERENCES chunks ON DELETE CASCADE,"
                " embedding halfvec({d}) NOT NULL) WITH (toast_tuple_target = 8160)"
            ).format(t=sql.Identifier(name), d=sql.Literal(dimensions))
        )
        space = Space(space_id, model, dimensions, simulated, name, None, index_kind)
        conn.execute(_create_index(space))
    return space


def quantized(space: Space, value: sql.Composable) -> sql.Composed:
    """`value` (a halfvec) as the bits a binary index holds: one per dimension, set where positive."""
    return sql.SQL("binary_quantize({v})::bit({d})").format(v=value, d=sql.Literal(space.dimensions))


def _create_index(space: Space) -> sql.Composed:
    column = (
        sql.SQL("({q}) bit_hamming_ops").format(q=quantized(space, sql.Identifier("embedding")))
        if space.index_kind == "binary"
        else sql.SQL("embedding halfvec_cosine_ops")
    )
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw ({c}) WITH (m = {m}, ef_construction = {ef})"
    ).format(
        i=sql.Identifier(f"{space.table_name}_hnsw"),
        t=space.table,
        c=column,
        m=sql.Literal(HNSW_M),
        ef=sql.Literal(HNSW_EF_CONSTRUCTION),
    )


def get_space(conn: psycopg.Connection, space_id: int) -> Space | None:
    row = conn.execute(
        f"SELECT {_SPACE_COLUMNS} FROM embedding_spaces WHERE id = %s",
        (space_id,),
    ).fetchone()
    return Space(*row) if row else None


def estimated_rows(conn: psycopg.Connection, space: Space) -> int | None:
    """The space's vector count by its statistics (ANALYZE, autovacuum, an index build); None before any."""
    row = conn.execute(
        "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (space.table_name,)
    ).fetchone()
    return None if row is None or row[0] < 0 else int(row[0])


def deferred_space_ids(conn: psycopg.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM embedding_spaces WHERE index_deferred_at IS NOT NULL")]


def deferred_seconds(conn: psycopg.Connection, space_id: int) -> float | None:
    """How long the space's index has been deferred, by the database's clock; None: it is live."""
    row = conn.execute(
        "SELECT extract(epoch FROM now() - index_deferred_at) FROM embedding_spaces WHERE id = %s",
        (space_id,),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def rows_up_to(conn: psycopg.Connection, space: Space, limit: int) -> int:
    """The space's vector count, counted no further than `limit` (a bound, not a full count)."""
    return scalar(
        conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {t} LIMIT %s) s").format(t=space.table), (limit,)
        )
    )


def lock_index(conn: psycopg.Connection, space: Space) -> Space:
    """Take the space's index lock for this transaction; return the space as it is now."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (INDEX_LOCK_BASE + space.id,))
    now = get_space(conn, space.id)
    assert now is not None  # spaces are never deleted
    return now


def defer_index(conn: psycopg.Connection, space: Space) -> Space:
    """Drop the space's HNSW index until `build_index`; call inside a transaction. Searches meanwhile
    read the table exactly; the drop waits for the searches and writes already running."""
    space = lock_index(conn, space)
    if not space.index_deferred:
        since = scalar(
            conn.execute(
                "UPDATE embedding_spaces SET index_deferred_at = now() WHERE id = %s RETURNING index_deferred_at",
                (space.id,),
            )
        )
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {i}").format(i=sql.Identifier(f"{space.table_name}_hnsw")))
        space = replace(space, index_deferred_at=since)
    return space


def build_index(conn: psycopg.Connection, space: Space, *, memory_mb: int) -> None:
    """Build the space's HNSW index in one pass; call inside a transaction holding `lock_index`.
    Writers wait for it (a SHARE lock), searches do not; it commits with the space marked indexed."""
    conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory_mb}MB")))
    conn.execute(_create_index(space))
    conn.execute("UPDATE embedding_spaces SET index_deferred_at = NULL WHERE id = %s", (space.id,))
    # Fresh statistics, so the planner weighs the index against a scan with the table's real size.
    conn.execute(sql.SQL("ANALYZE {t}").format(t=space.table))


def move_upgraded(
    conn: psycopg.Connection, target: Space, chunk_ids: Sequence[int], vecs: np.ndarray
) -> list[int]:
    """Give chunks waiting for upgrade their real vectors: delete each one's mock vector, write the new one
    in `target`, record the space. Call inside a transaction. Chunks deleted or upgraded meanwhile are left
    out; the ones moved are returned."""
    rows = conn.execute(
        "SELECT c.id, s.table_name FROM chunks c JOIN embedding_spaces s ON s.id = c.space_id"
        " WHERE c.id = ANY(%s) AND c.awaiting_upgrade FOR UPDATE OF c",
        (list(chunk_ids),),
    ).fetchall()
    still = {chunk_id: table for chunk_id, table in rows}
    if not still:
        return []
    for table in set(still.values()):
        ids = [i for i, t in still.items() if t == table]
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE chunk_id = ANY(%s)").format(t=sql.Identifier(table)), (ids,)
        )
    keep = [i for i, chunk_id in enumerate(chunk_ids) if chunk_id in still]
    moved = [chunk_ids[i] for i in keep]
    write(conn, target, moved, vecs[keep])
    conn.execute(
        "UPDATE chunks SET space_id = %s, awaiting_upgrade = false WHERE id = ANY(%s)", (target.id, moved)
    )
    return moved


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


def count(conn: psycopg.Connection, space: Space) -> int:
    return scalar(conn.execute(sql.SQL("SELECT count(*) FROM {t}").format(t=space.table)))


def empty(conn: psycopg.Connection, space: Space) -> None:
    """Free the space's vectors and its embedding cache; the space itself stays, to be filled again."""
    conn.execute(sql.SQL("TRUNCATE {t}").format(t=space.table))
    conn.execute("DELETE FROM embedding_cache WHERE space_id = %s", (space.id,))
