"""Search: the user's chunks best matching a query, within the one space new documents are embedded in.

Three modes: `vector` (the chunks nearest to the query's embedding), `keyword` (BM25 over the query's
words, store/keyword.py) and `hybrid`, the default: both lists, `FUSION_CANDIDATES` deep or as deep as
the page asked for, fused by reciprocal rank (fusion.py). Keyword search names, commands, codes and rare
words exactly; the vectors find paraphrase (with real embeddings); each covers the other's misses.

The query is embedded before a connection is taken. A single mode reads on one connection; hybrid
reads its two lists at once on two connections sharing one snapshot (db/snapshot.py), or one after the
other on one when the pool has no second free. The space's row is read once per process (a space, once
made, keeps its id and table). A space of at most
`search_exact_max_vectors` vectors (by its statistics, read every ROWS_TTL_S) is scanned exactly.
Filters (chosen documents, upload metadata) apply inside each list; `offset` and `min_score` to the
final ranking. Pages within the first FUSION_CANDIDATES hits are slices of one ranking; a page beyond
it fuses deeper lists, which can only add chunks found low in both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from ingest import fusion
from ingest.db.snapshot import shared_snapshot
from ingest.errors import IngestError
from ingest.search_mode import SearchMode
from ingest.store import keyword, spaces, vectors
from ingest.store.search import Hit, nearest
from ingest.store.users import User
from workers.runtime import Runtime

ROWS_TTL_S = 30.0
# How deep each list goes before fusion, at least, and the weight of the vector list against the keyword
# list's 1: the mock embedder's vectors are a blurred copy of the words keyword search reads exactly, so
# they break ties; real embeddings bring meaning the words lack, so they count as much. Measured on the
# sample questions (docs/benchmarks.md).
FUSION_CANDIDATES = 20
VECTOR_WEIGHT = {True: 0.3, False: 1.0}  # by Space.simulated
Ranking = tuple[list[Hit], float]  # hits best first, and the list's weight in fusion


def search(
    rt: Runtime,
    user: User,
    query: str,
    *,
    top_k: int = 5,
    document_ids: Sequence[UUID] | None = None,
    mode: SearchMode = SearchMode.HYBRID,
    offset: int = 0,
    metadata: dict[str, Any] | None = None,
    min_score: float | None = None,
) -> list[Hit]:
    """`top_k` hits after the first `offset`, best first, each scoring at least `min_score` in the mode's
    own scale (vector: cosine similarity; keyword: BM25; hybrid: fused, 1 for first in both lists)."""
    return search_in_space(
        rt,
        user,
        query,
        top_k=top_k,
        document_ids=document_ids,
        mode=mode,
        offset=offset,
        metadata=metadata,
        min_score=min_score,
    ).hits


@dataclass(frozen=True, slots=True)
class Searched:
    space: vectors.Space | None  # the one space read; None: nothing embedded there yet
    hits: list[Hit]


def search_in_space(
    rt: Runtime,
    user: User,
    query: str,
    *,
    top_k: int = 5,
    document_ids: Sequence[UUID] | None = None,
    mode: SearchMode = SearchMode.HYBRID,
    offset: int = 0,
    metadata: dict[str, Any] | None = None,
    min_score: float | None = None,
) -> Searched:
    """`search`, with the space it read."""
    if not query.strip():
        raise IngestError("the query is empty")
    try:
        space, hits = _ranked(rt, user, query, top_k, document_ids, mode, offset, metadata)
    except spaces.SpaceSwitched:
        # `ingest reembed` switched spaces between this process's read of the active one and the search's
        # snapshot: search again, in the space the snapshot names.
        rt.router.target(fresh=True)
        space, hits = _ranked(rt, user, query, top_k, document_ids, mode, offset, metadata)
    if min_score is not None:
        hits = [hit for hit in hits if hit.score >= min_score]
    return Searched(space, hits[offset : offset + top_k])


def _ranked(
    rt: Runtime,
    user: User,
    query: str,
    top_k: int,
    document_ids: Sequence[UUID] | None,
    mode: SearchMode,
    offset: int,
    metadata: dict[str, Any] | None,
) -> tuple[vectors.Space | None, list[Hit]]:
    """The fused (or single) ranking, read in one snapshot of one space: raises SpaceSwitched when that
    snapshot's active space is not the one the query was embedded for."""
    embedder = rt.router.search_embedder()
    key = (embedder.model, embedder.dimensions)
    space = rt.spaces.get(key)
    if space is None:
        with rt.pool.connection() as conn:
            space = _space(rt, conn, key)
        if space is None:
            return None, []
    depth = offset + top_k if mode is not SearchMode.HYBRID else max(offset + top_k, FUSION_CANDIDATES)
    query_vector = embedder.embed([query]).vectors[0] if mode is not SearchMode.KEYWORD else None

    def keyword_half(conn: psycopg.Connection) -> Ranking:
        found = keyword.search(
            conn, space.id, query, owner_id=user.id, top_k=depth, document_ids=document_ids, metadata=metadata
        )
        return found, 1.0

    def vector_half(conn: psycopg.Connection) -> Ranking:
        assert query_vector is not None  # embedded above in every mode that reads vectors
        rows = _rows(rt, conn, space)
        found = nearest(
            conn,
            space,
            query_vector,
            owner_id=user.id,
            top_k=depth,
            ef_search=rt.settings.search_ef,
            document_ids=document_ids,
            metadata=metadata,
            # Filters usually keep a sliver of the space: the filtered plan goes straight there.
            direct=not document_ids and not metadata,
            rerank=rt.settings.search_candidates,
            exact=rows is not None and rows <= rt.settings.search_exact_max_vectors,
        )
        return found, VECTOR_WEIGHT[space.simulated]

    if mode is SearchMode.HYBRID:
        rankings = _both(rt, space, keyword_half, vector_half)
    else:
        with rt.pool.connection() as conn, conn.transaction():
            # One snapshot: the active space it names is the one the search reads.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            _still_active(conn, space)
            rankings = [(keyword_half if mode is SearchMode.KEYWORD else vector_half)(conn)]
    return space, fusion.fuse(rankings) if mode is SearchMode.HYBRID else rankings[0][0]


def _both(
    rt: Runtime,
    space: vectors.Space,
    keyword_half: Callable[[psycopg.Connection], Ranking],
    vector_half: Callable[[psycopg.Connection], Ranking],
) -> list[Ranking]:
    """Both halves on one snapshot (a new version committed between them would mix versions, and the
    active space it names is the one both read), at once on two connections when the pool has a second
    free: the search then costs the slower half, not the sum of both; else one after the other on one."""
    with shared_snapshot(rt.pool) as (first, second):
        _still_active(first, space)  # read in the snapshot both halves read
        if second is None:
            return [keyword_half(first), vector_half(first)]
        with ThreadPoolExecutor(max_workers=1) as other:
            vectors_found = other.submit(vector_half, second)
            return [keyword_half(first), vectors_found.result()]


def _still_active(conn: psycopg.Connection, space: vectors.Space) -> None:
    """Raise SpaceSwitched when the snapshot's active space is not the one the query was embedded for."""
    if not space.simulated and spaces.active(conn).space_id not in (None, space.id):
        raise spaces.SpaceSwitched(f"searches moved from {space.table_name}")


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
