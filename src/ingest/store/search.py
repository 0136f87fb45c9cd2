"""Nearest chunks to a query vector, within one embedding space and one owner's completed documents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql

from ingest.store.vectors import Space

@dataclass(frozen=True, slots=True)
class Hit:
    document_id: UUID
    chunk_id: int
    filename: str
    text: str
    score: float
    metadata: dict[str, Any]


def nearest(
    conn: psycopg.Connection,
    space: Space,
    query: np.ndarray,
    *,
    owner_id: int,
    top_k: int,
    ef_search: int,
    document_ids: Sequence[UUID] | None = None,
) -> list[Hit]:
    """`ef_search`: candidates the HNSW scan keeps. Low values lose true neighbours when many vectors are
    about equally far (noise-like text); 400 finds every sample-corpus fact that exact search finds."""
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(ef_search, top_k))))
        # Filters (owner, status, ids) are applied after the index scan; iterative scans keep
        # reading the index until enough rows pass them instead of returning too few.
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        filter_ids = sql.SQL("AND d.id = ANY(%(ids)s)") if document_ids else sql.SQL("")
        rows = conn.execute(
            sql.SQL(
                "SELECT * FROM ("
                " SELECT c.document_id, c.id, d.filename, c.text, c.metadata, v.embedding <=> %(q)s AS distance"
                " FROM {t} v JOIN chunks c ON c.id = v.chunk_id JOIN documents d ON d.id = c.document_id"
                " WHERE d.owner_id = %(owner)s AND d.status = 'completed' {ids}"
                " ORDER BY v.embedding <=> %(q)s LIMIT %(k)s) hits ORDER BY distance"
            ).format(t=space.table, ids=filter_ids),
            {
                "q": HalfVector(query.astype(np.float16)),
                "owner": owner_id,
                "k": top_k,
                "ids": list(document_ids or []),
            },
        ).fetchall()
    return [Hit(r[0], r[1], r[2], r[3], round(1.0 - float(r[5]), 6), r[4]) for r in rows]
