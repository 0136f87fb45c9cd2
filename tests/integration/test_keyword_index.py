"""A chunk is found by keyword exactly when it is found by vector: from the commit that stores its vector.

Chunks are written (with their generated keyword index) by the parse stage, their vectors later by the
embedding stage; keyword search reads a chunk only in the space its vector is in, so a chunk stored
without a vector is found by neither search, and one whose vector is stored is found by both."""

from __future__ import annotations

from uuid import UUID

import psycopg

from ingest.chunking import Chunk
from ingest.search_mode import SearchMode
from ingest.services.search import search
from ingest.store import chunks, vectors
from ingest.store.users import User, ensure_user
from router.embedder_mock import MockEmbedder
from workers.runtime import Runtime

TEXT = "The quartermaster logs every zeppelin departure in the harbour ledger."


def _completed_document(conn: psycopg.Connection, user: User, text: str) -> UUID:
    """A document whose chunk is stored and which reads as completed, but whose vector is not stored yet."""
    doc = conn.execute(
        "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
        " VALUES (%s, md5(%s), 'ledger.txt', 'text/plain', 1, 'completed') RETURNING id",
        (user.id, text),
    ).fetchone()[0]
    chunks.replace(
        conn, doc, [Chunk(0, text, 14, {"page_start": None, "page_end": None, "heading_path": []})]
    )
    return doc


def _found(rt: Runtime, user: User) -> dict[SearchMode, bool]:
    return {mode: bool(search(rt, user, "zeppelin ledger", mode=mode)) for mode in SearchMode}


def test_a_chunk_is_keyword_searchable_only_with_its_vector(rt: Runtime) -> None:
    embedder = MockEmbedder()
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "local")
        space = vectors.ensure_space(conn, embedder.model, embedder.dimensions, simulated=True)
        with conn.transaction():
            doc = _completed_document(conn, user, TEXT)
        assert conn.execute(
            "SELECT search_terms @@ to_tsquery('english', 'zeppelin') FROM chunks WHERE document_id = %s",
            (doc,),
        ).fetchone()[0]  # its keyword index exists from the parse stage on
    assert _found(rt, user) == dict.fromkeys(SearchMode, False)

    with rt.pool.connection() as conn:
        stored = chunks.pending_in_range(conn, doc, 0, 0)
        with conn.transaction():  # as the embedding stage does: vector and mark in one transaction
            vectors.write(conn, space, [c.id for c in stored], embedder.embed([TEXT]).vectors)
            chunks.mark_embedded(conn, [c.id for c in stored], space.id)
            assert _found(rt, user) == dict.fromkeys(SearchMode, False)  # not before the commit
    assert _found(rt, user) == dict.fromkeys(SearchMode, True)

    with rt.pool.connection() as conn:  # a chunk moved to another space (an upgrade) leaves this one whole
        other = vectors.ensure_space(conn, "other-model", 8, simulated=True)
        conn.execute("UPDATE chunks SET space_id = %s WHERE document_id = %s", (other.id, doc))
        conn.execute(f"DELETE FROM {space.table_name}")
    assert _found(rt, user) == dict.fromkeys(SearchMode, False)
