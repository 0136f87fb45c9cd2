"""Search: embed the query in the space new documents are embedded in, and compare only within it.

The query is embedded before a connection is taken, and one connection serves the whole search; the
space's row is read once per process (a space, once made, keeps its id and table). A space of at most
`search_exact_max_vectors` vectors (by its statistics, read every ROWS_TTL_S) is scanned exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from uuid import UUID

import psycopg

from ingest.errors import IngestError
from ingest.store import vectors
from ingest.store.search import Hit, nearest
from ingest.store.users import User
from workers.runtime import Runtime

ROWS_TTL_S = 30.0


def search(
    rt: Runtime, user: User, query: str, *, top_k: int = 5, document_ids: Sequence[UUID] | None = None
) -> list[Hit]:
    if not query.strip():
        raise IngestError("the query is empty")
    embedder = rt.router.search_embedder()
    key = (embedder.model, embedder.dimensions)
    space = rt.spaces.get(key)
    if space is None:
        with rt.pool.connection() as conn:
            space = _space(rt, conn, key)
        if space is None:
            return []
    query_vector = embedder.embed([query]).vectors[0]
    with rt.pool.connection() as conn:
        rows = _rows(rt, conn, space)
        return nearest(
            conn,
            space,
            query_vector,
            owner_id=user.id,
            top_k=top_k,
            ef_search=rt.settings.search_ef,
            document_ids=document_ids,
            # Chosen documents are usually a sliver of the space: the filtered plan goes straight there.
            direct=not document_ids,
            rerank=rt.settings.search_candidates,
            exact=rows is not None and rows <= rt.settings.search_exact_max_vectors,
        )


def _rows(rt: Runtime, conn: psycopg.Connection, space: vectors.Space) -> int | None:
    """The space's estimated size, read at most every ROWS_TTL_S (it only picks the plan)."""
    known = rt.space_rows.get(space.id)
    if known is None or time.monotonic() - known[1] > ROWS_TTL_S:
        known = (vectors.estimated_rows(conn, space), time.monotonic())
        rt.space_rows[space.id] = known
    return known[0]


def _space(rt: Runtime, conn: psycopg.Connection, key: tuple[str, int]) -> vectors.Space | None:
    space = vectors.find_space(conn, *key)
    if space is not None:
        rt.spaces[key] = space
    return space
