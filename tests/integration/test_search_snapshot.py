"""Hybrid search reads its keyword and vector lists at once, on two connections sharing one snapshot; with
no second connection free it reads both on one. Either way the lists come from one view of the data."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from ingest.chunking import Chunk
from ingest.config import Settings
from ingest.db.pool import open_pool
from ingest.db.snapshot import shared_snapshot
from ingest.search_mode import SearchMode
from ingest.services.search import search
from ingest.store import chunks, vectors
from ingest.store.users import User, ensure_user
from router.embedder_mock import MockEmbedder
from workers.runtime import Runtime

TEXTS = [
    "The quartermaster logs every zeppelin departure in the harbour ledger.",
    "Zeppelin crews sign the ledger before the harbour master clears them.",
    "Lighthouse keepers trim the wick at dusk and log the weather.",
    "The harbour ledger lists cargo, crew and the hour of each departure.",
    "A quiet garden of ferns grows beside the old customs house.",
]


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    pool = open_pool(database_url, max_size=2)
    with pool.connection() as conn:
        conn.execute("CREATE TABLE seen (n int)")
    yield pool
    pool.close()


def _count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM seen").fetchone()
    assert row is not None
    return int(row[0])


def test_the_second_connection_reads_the_first_ones_snapshot(pool: ConnectionPool, database_url: str) -> None:
    pool.resize(min_size=2)
    pool.wait()
    with shared_snapshot(pool) as (first, second):
        assert second is not None
        # Committed after the snapshot was exported and before the second connection read anything: had
        # it taken a snapshot of its own at its first read, it would see the row.
        with psycopg.connect(database_url, autocommit=True) as writer:
            writer.execute("INSERT INTO seen VALUES (1)")
        assert _count(second) == 0
        assert _count(first) == 0
    with pool.connection() as conn:
        assert _count(conn) == 1


def test_with_no_connection_free_the_first_reads_alone(pool: ConnectionPool) -> None:
    with pool.connection() as held, held.transaction(), shared_snapshot(pool) as (first, second):
        assert second is None  # `held` is the other of the two
        assert _count(first) == 0


def _corpus(rt: Runtime) -> User:
    embedder = MockEmbedder()
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "local")
        space = vectors.ensure_space(conn, embedder.model, embedder.dimensions, simulated=True)
        for i, text in enumerate(TEXTS):
            with conn.transaction():
                doc: UUID = conn.execute(
                    "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
                    " VALUES (%s, md5(%s), %s, 'text/plain', 1, 'completed') RETURNING id",
                    (user.id, text, f"doc-{i}.txt"),
                ).fetchone()[0]  # type: ignore[index]
                chunks.replace(conn, doc, [Chunk(0, text, 14, {})])
                stored = chunks.pending_in_range(conn, doc, 0, 0)
                vectors.write(conn, space, [c.id for c in stored], embedder.embed([text]).vectors)
                chunks.mark_embedded(conn, [c.id for c in stored], space.id)
    return user


def _ranked(rt: Runtime, user: User, query: str) -> list[tuple[str, float]]:
    return [(h.filename, h.score) for h in search(rt, user, query, top_k=5, mode=SearchMode.HYBRID)]


def test_hybrid_ranks_the_same_on_two_connections_and_on_one(rt: Runtime, database_url: str) -> None:
    user = _corpus(rt)
    rt.pool.resize(min_size=2)
    rt.pool.wait()
    with Runtime.open(Settings(_env_file=None, database_url=database_url, db_pool_max=1)) as alone:
        for query in ("zeppelin ledger", "harbour departure", "ferns garden", "weather at dusk"):
            both = _ranked(rt, user, query)
            assert both, query
            assert both == _ranked(alone, user, query)
    assert _ranked(rt, user, "zeppelin ledger")[0][0] in {"doc-0.txt", "doc-1.txt"}
