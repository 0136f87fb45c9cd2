"""Search: embed the query in the space new documents are embedded in, and compare only within it."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from ingest.errors import IngestError
from ingest.runtime import Runtime
from ingest.store import vectors
from ingest.store.search import Hit, nearest
from ingest.store.users import User


def search(
    rt: Runtime, user: User, query: str, *, top_k: int = 5, document_ids: Sequence[UUID] | None = None
) -> list[Hit]:
    if not query.strip():
        raise IngestError("the query is empty")
    embedder = rt.router.search_embedder()
    with rt.pool.connection() as conn:
        space = vectors.find_space(conn, embedder.model, embedder.dimensions)
    if space is None:
        return []
    query_vector = embedder.embed([query]).vectors[0]
    with rt.pool.connection() as conn:
        return nearest(
            conn,
            space,
            query_vector,
            owner_id=user.id,
            top_k=top_k,
            ef_search=rt.settings.search_ef,
            document_ids=document_ids,
        )
