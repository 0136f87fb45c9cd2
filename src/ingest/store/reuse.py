"""The embedding cache: vectors by (space, owner, normalised-text hash), shared by every worker.

Per owner: a user's text is served only from what that user embedded, so neither a user's costs nor how
fast a document completes shows whether another user ingested the same text (docs/costs.md). Chunks are
matched to their owner through their document. Reused vectors never leave the database: they are copied
server-side from the cache into the space's table, and new vectors are remembered from the rows just
written, so reuse adds no vector traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import psycopg
from psycopg import sql

from ingest.store.vectors import Space


def cached(conn: psycopg.Connection, space: Space, document_id: UUID, hashes: Sequence[bytes]) -> set[bytes]:
    """The hashes among `hashes` whose vector the space's cache holds for the document's owner."""
    rows = conn.execute(
        "SELECT e.text_hash FROM embedding_cache e JOIN documents d ON d.owner_id = e.owner_id"
        " WHERE d.id = %s AND e.space_id = %s AND e.text_hash = ANY(%s)",
        (document_id, space.id, list(hashes)),
    ).fetchall()
    return {bytes(r[0]) for r in rows}


def cached_for_documents(
    conn: psycopg.Connection, space: Space, wanted: Sequence[tuple[UUID, bytes]]
) -> set[tuple[UUID, bytes]]:
    """`cached` for many documents in one round trip: the (document, hash) pairs among `wanted` whose
    vector the space's cache holds for the document's owner."""
    if not wanted:
        return set()
    rows = conn.execute(
        "SELECT w.document_id, w.text_hash FROM unnest(%s::uuid[], %s::bytea[]) AS w(document_id, text_hash)"
        " JOIN documents d ON d.id = w.document_id JOIN embedding_cache e"
        " ON e.owner_id = d.owner_id AND e.space_id = %s AND e.text_hash = w.text_hash",
        ([d for d, _ in wanted], [h for _, h in wanted], space.id),
    ).fetchall()
    return {(document_id, bytes(text_hash)) for document_id, text_hash in rows}


def copy_cached(conn: psycopg.Connection, space: Space, chunk_ids: Sequence[int]) -> list[int]:
    """Give each chunk the cached vector of its text; return the chunks served (a redelivery overwrites)."""
    if not chunk_ids:
        return []
    rows = conn.execute(
        sql.SQL(
            "INSERT INTO {t} (chunk_id, embedding)"
            " SELECT c.id, e.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"
            " JOIN embedding_cache e"
            " ON e.space_id = %s AND e.owner_id = d.owner_id AND e.text_hash = c.text_hash"
            " WHERE c.id = ANY(%s)"
            " ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding RETURNING chunk_id"
        ).format(t=space.table),
        (space.id, list(chunk_ids)),
    ).fetchall()
    return [r[0] for r in rows]


def remember(conn: psycopg.Connection, space: Space, chunk_ids: Sequence[int]) -> None:
    """Cache the vectors just stored for these chunks, for their owners (the first writer of a text wins;
    equal anyway)."""
    if not chunk_ids:
        return
    conn.execute(
        sql.SQL(
            "INSERT INTO embedding_cache (space_id, owner_id, text_hash, embedding)"
            " SELECT %s, d.owner_id, c.text_hash, v.embedding FROM chunks c JOIN {t} v ON v.chunk_id = c.id"
            " JOIN documents d ON d.id = c.document_id"
            " WHERE c.id = ANY(%s) ON CONFLICT DO NOTHING"
        ).format(t=space.table),
        (space.id, list(chunk_ids)),
    )
