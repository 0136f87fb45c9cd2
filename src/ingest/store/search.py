"""Nearest chunks to a query vector, within one embedding space and one owner's completed documents.

A space small enough (the caller says `exact`) is scanned: every vector compared, which on such a
table is faster than the index and finds the true nearest. A binary space's index orders by Hamming distance between binary quantizations; its nearest
`rerank` candidates are re-ranked by exact distance in the same query.

Two plans, one answer. The direct plan asks the vector table alone for its nearest rows, exactly the
query a bare pgvector client sends (the HNSW index or, when the planner finds it cheaper, a scan), then
joins those few rows to their chunks and documents and drops what the caller may not see. When at
least `top_k` survive they are the answer: a visible vector outside the candidates is farther than
every candidate. When fewer survive (another owner's vectors, a version still being built), the
filtered plan runs: the join with its filters drives an iterative HNSW scan until enough rows pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql
from psycopg.types.json import Jsonb

from ingest.store.vectors import Space, quantized

# pgvector's ceiling on hnsw.ef_search.
MAX_EF_SEARCH = 1000


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: UUID
    chunk_id: int
    filename: str
    text: str
    score: float
    metadata: dict[
        str, Any
    ]  # the upload's, with the chunk's own (page_start, page_end, heading_path) over it

    @property
    def page_start(self) -> int | None:
        return _page(self.metadata.get("page_start"))

    @property
    def page_end(self) -> int | None:
        return _page(self.metadata.get("page_end"))

    @property
    def heading_path(self) -> list[str]:
        path = self.metadata.get("heading_path")
        return [str(h) for h in path] if isinstance(path, list) else []


def _page(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def candidates(top_k: int) -> int:
    """How many nearest vectors the direct plan takes: room for a few hidden ones beside `top_k`."""
    return 2 * top_k + 10


# `{ids}`: the caller's filters (scope_filter).
VISIBLE = "d.owner_id = %(owner)s AND d.status = 'completed' {ids}"
_JOIN = "JOIN chunks c ON c.id = v.chunk_id JOIN documents d ON d.id = c.document_id"
# A hit's metadata: what the user gave with the upload, then the chunk's own (page, heading path) over it.
ROW = "c.document_id, c.id, d.filename, c.text, d.metadata || c.metadata"

# halfvec spaces: the index orders by the exact distance itself.
_DIRECT = (
    "SELECT " + ROW + ", v.distance FROM ("
    " SELECT chunk_id, embedding <=> %(q)s AS distance FROM {t} ORDER BY embedding <=> %(q)s LIMIT %(n)s) v"
    " " + _JOIN + " WHERE " + VISIBLE + " ORDER BY v.distance LIMIT %(k)s"
)
_FILTERED = (
    "SELECT * FROM (SELECT "
    + ROW
    + ", v.embedding <=> %(q)s AS distance FROM {t} v "
    + _JOIN
    + " WHERE "
    + VISIBLE
    + " ORDER BY v.embedding <=> %(q)s LIMIT %(k)s) hits ORDER BY distance"
)
# binary spaces: the index orders by Hamming distance between quantizations; the `m` nearest so are
# re-ranked by the exact distance.
_DIRECT_BINARY = (
    "SELECT " + ROW + ", v.distance FROM ("
    " SELECT chunk_id, embedding <=> %(q)s AS distance FROM ("
    "  SELECT chunk_id, embedding FROM {t} ORDER BY {bits} <~> {qbits} LIMIT %(m)s) b"
    " ORDER BY distance LIMIT %(n)s) v " + _JOIN + " WHERE " + VISIBLE + " ORDER BY v.distance LIMIT %(k)s"
)
_FILTERED_BINARY = (
    "SELECT " + ROW + ", v.distance FROM ("
    " SELECT v.chunk_id, v.embedding <=> %(q)s AS distance FROM {t} v "
    + _JOIN
    + " WHERE "
    + VISIBLE
    + " ORDER BY {bits} <~> {qbits} LIMIT %(m)s) v "
    + _JOIN
    + " ORDER BY v.distance LIMIT %(k)s"
)


# Small spaces: every vector compared. The `+ 0` keeps the planner off the HNSW index (it can only
# serve `ORDER BY embedding <=> q`), so this is an exact scan whatever the statistics say; ordering by
# the output column computes each distance once.
_DIRECT_EXACT = (
    "SELECT " + ROW + ", v.distance FROM ("
    " SELECT chunk_id, (embedding <=> %(q)s) + 0 AS distance FROM {t} ORDER BY 2 LIMIT %(n)s) v "
    + _JOIN
    + " WHERE "
    + VISIBLE
    + " ORDER BY v.distance LIMIT %(k)s"
)
_FILTERED_EXACT = (
    "SELECT "
    + ROW
    + ", (v.embedding <=> %(q)s) + 0 AS distance FROM {t} v "
    + _JOIN
    + " WHERE "
    + VISIBLE
    + " ORDER BY distance LIMIT %(k)s"
)


def _sql(template: str, space: Space, ids: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(
        t=space.table,
        ids=ids,
        bits=quantized(space, sql.SQL("embedding")),
        qbits=quantized(space, sql.SQL("%(q)s")),
    )


def nearest(
    conn: psycopg.Connection,
    space: Space,
    query: np.ndarray,
    *,
    owner_id: int,
    top_k: int,
    ef_search: int,
    document_ids: Sequence[UUID] | None = None,
    metadata: dict[str, Any] | None = None,
    direct: bool = True,
    rerank: int = 0,
    exact: bool = False,
) -> list[Hit]:
    """`ef_search`: candidates the HNSW scan keeps. Low values lose true neighbours when many vectors are
    about equally far (noise-like text); 400 finds every sample-corpus fact that exact search finds.
    `rerank`: in a binary space, how many nearest by Hamming distance are re-ranked exactly.
    `direct=False` skips the direct plan (the caller knows its filters reject most vectors).
    `exact`: compare every vector (a scan), for spaces small enough that this beats the index.
    `metadata`: only documents whose upload metadata contains this object."""
    if exact:
        return _exact(
            conn, space, query, owner_id=owner_id, top_k=top_k, document_ids=document_ids, metadata=metadata
        )
    binary = space.index_kind == "binary"
    wanted = candidates(top_k)
    params = _params(query, owner_id, top_k, document_ids, metadata) | {"m": max(rerank, wanted)}
    ids = scope_filter(document_ids, metadata)
    scan = max(ef_search, params["m"] if binary else wanted)
    ef = sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(scan, MAX_EF_SEARCH)))
    with conn.transaction():
        if direct:
            with conn.pipeline():  # one round trip: the setting and the query travel together
                conn.execute(ef)
                cur = conn.execute(_sql(_DIRECT_BINARY if binary else _DIRECT, space, ids), params)
            rows = cur.fetchall()
            if len(rows) == top_k:
                return _hits(rows)
        else:
            conn.execute(ef)
        # Filters are applied after the index scan; iterative scans keep reading the index until enough
        # rows pass them instead of returning too few.
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(_sql(_FILTERED_BINARY if binary else _FILTERED, space, ids), params).fetchall()
    return _hits(rows)


def _exact(
    conn: psycopg.Connection,
    space: Space,
    query: np.ndarray,
    *,
    owner_id: int,
    top_k: int,
    document_ids: Sequence[UUID] | None,
    metadata: dict[str, Any] | None,
) -> list[Hit]:
    params = _params(query, owner_id, top_k, document_ids, metadata)
    ids = scope_filter(document_ids, metadata)
    if not document_ids and not metadata:
        rows = conn.execute(_sql(_DIRECT_EXACT, space, ids), params).fetchall()
        if len(rows) == top_k:
            return _hits(rows)
    return _hits(conn.execute(_sql(_FILTERED_EXACT, space, ids), params).fetchall())


def _params(
    query: np.ndarray,
    owner_id: int,
    top_k: int,
    document_ids: Sequence[UUID] | None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return scope_params(owner_id, document_ids, metadata) | {
        "q": HalfVector(query.astype(np.float16)),
        "k": top_k,
        "n": candidates(top_k),
    }


def scope_params(
    owner_id: int, document_ids: Sequence[UUID] | None, metadata: dict[str, Any] | None
) -> dict[str, Any]:
    """The parameters of VISIBLE with `scope_filter`."""
    return {"owner": owner_id, "ids": list(document_ids or []), "meta": Jsonb(metadata or {})}


def scope_filter(
    document_ids: Sequence[UUID] | None, metadata: dict[str, Any] | None = None
) -> sql.Composable:
    """The caller's filters, for VISIBLE's `{ids}`: chosen documents, and upload metadata containing an object."""
    parts = []
    if document_ids:
        parts.append(sql.SQL("AND d.id = ANY(%(ids)s)"))
    if metadata:
        parts.append(sql.SQL("AND d.metadata @> %(meta)s"))
    return sql.SQL(" ").join(parts)


def _hits(rows: list[tuple]) -> list[Hit]:
    return [Hit(r[0], r[1], r[2], r[3], round(1.0 - float(r[5]), 6), r[4]) for r in rows]
