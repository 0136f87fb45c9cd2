"""Bulk loads: a large backlog loads without HNSW maintenance, searches stay exact meanwhile, and the
index is built once the backlog has drained (workers/indexing.py)."""

from __future__ import annotations

import time
from pathlib import Path

import dramatiq
import pytest
from pgvector import HalfVector

from ingest.config import Settings
from ingest.search_mode import SearchMode
from ingest.services.search import search
from ingest.services.submit import submit_file
from ingest.store import jobs, vectors
from ingest.store.users import ensure_user
from tests.integration import conftest
from workers import indexing
from workers.embed_stage import embed_stage
from workers.inprocess import serving
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

WORDS = conftest.WORDS[:12]  # the documents' vocabulary, the query's words among them
QUERY = "charlie delta echo"


def write_docs(folder: Path, count: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for d in range(count):
        paras = [
            f"Paragraph {p} of document {d}. "
            + " ".join(WORDS[(p * 5 + i * 3 + d) % len(WORDS)] for i in range(50))
            for p in range(12)
        ]
        path = folder / f"doc-{d}.txt"
        path.write_text("\n\n".join(paras))
        paths.append(path)
    return paths


@pytest.fixture
def bulk_settings(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "64")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "8")
    monkeypatch.setenv("INGEST_EMBED_BATCH_CHUNKS", "8")
    monkeypatch.setenv("INGEST_BULK_MIN_CHUNKS", "16")
    return Settings(_env_file=None)


@pytest.fixture
def runtime(bulk_settings: Settings):
    with Runtime.open(bulk_settings) as rt:
        yield rt
    dramatiq.get_broker().flush_all()  # build messages no worker of this test consumed


def has_index(rt: Runtime, space: vectors.Space) -> bool:
    with rt.pool.connection() as conn:
        found = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (f"{space.table_name}_hnsw",))
        return found.fetchone() is not None


def space_of(rt: Runtime) -> vectors.Space:
    with rt.pool.connection() as conn:
        space = vectors.find_space(conn, "mock-lexical-v1", rt.settings.mock_embedding_dimensions)
    assert space is not None
    return space


def exact_top(rt: Runtime, space: vectors.Space, k: int) -> list[float]:
    """The scores of the true nearest chunks of the completed documents, by a full scan."""
    vector = rt.router.search_embedder().embed([QUERY]).vectors[0]

    with rt.pool.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        rows = conn.execute(
            f"SELECT round((1 - (v.embedding <=> %(q)s))::numeric, 4) FROM {space.table_name} v JOIN chunks c ON c.id = v.chunk_id"
            " JOIN documents d ON d.id = c.document_id WHERE d.status = 'completed'"
            " ORDER BY v.embedding <=> %(q)s LIMIT %(k)s",
            {"q": HalfVector(vector.astype("float16")), "k": k},
        ).fetchall()
    return [float(r[0]) for r in rows]


def scores(hits: list) -> list[float]:
    return [round(h.score, 4) for h in hits]


def test_a_large_backlog_loads_bare_searches_stay_exact_and_the_index_is_built_after(
    runtime: Runtime, tmp_path: Path
) -> None:
    rt = runtime
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    job_ids = [submit_file(rt, p, user=user).job_id for p in write_docs(tmp_path / "docs", 4)]
    planned = {j: parse_stage(rt, j) for j in job_ids}  # every document chunked: the backlog is known
    first_job, *rest = job_ids
    for batch in planned[first_job]:
        embed_stage(rt, first_job, batch.first, batch.last)
    space = space_of(rt)
    assert space.index_deferred and not has_index(rt, space)  # the first write found the backlog large

    # Mid-load, a search reads the table exactly: the completed document's true nearest chunks.
    assert scores(search(rt, user, QUERY, top_k=5, mode=SearchMode.VECTOR)) == exact_top(rt, space, 5)

    for job_id in rest:
        for batch in planned[job_id]:
            embed_stage(rt, job_id, batch.first, batch.last)
    with rt.pool.connection() as conn:
        assert jobs.open_count(conn) == 0
    assert indexing.build_if_drained(rt, space.id) == "built"
    space = space_of(rt)
    assert not space.index_deferred and has_index(rt, space)
    assert indexing.build_if_drained(rt, space.id) == "indexed"  # a second message finds it done
    rt.settings.search_exact_max_vectors = 0  # through the index, not the small-space scan
    assert scores(search(rt, user, QUERY, top_k=5, mode=SearchMode.VECTOR)) == exact_top(rt, space, 5)


def test_a_small_backlog_keeps_the_live_index(runtime: Runtime, tmp_path: Path) -> None:
    rt = runtime
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    job = submit_file(rt, write_docs(tmp_path / "docs", 1)[0], user=user).job_id
    rt.settings.bulk_min_chunks = 10_000
    for batch in parse_stage(rt, job):
        embed_stage(rt, job, batch.first, batch.last)
    space = space_of(rt)
    assert not space.index_deferred and has_index(rt, space)


def test_workers_defer_and_build_the_index_on_their_own(runtime: Runtime, tmp_path: Path) -> None:
    rt = runtime
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    with serving(rt, threads=2):
        job_ids = [submit_file(rt, p, user=user).job_id for p in write_docs(tmp_path / "docs", 6)]
        for _ in range(600):  # bounded: 60 s
            with rt.pool.connection() as conn:
                done = all(j is not None and j.final for j in (jobs.get(conn, i) for i in job_ids))
                deferred = conn.execute(
                    "SELECT count(*) FROM embedding_spaces WHERE index_deferred_at IS NOT NULL"
                ).fetchone()[0]
            if done and not deferred:
                break
            time.sleep(0.1)
    with rt.pool.connection() as conn:
        assert [jobs.get(conn, i).status for i in job_ids] == ["completed"] * len(job_ids)
    space = space_of(rt)
    assert not space.index_deferred and has_index(rt, space)
    assert search(rt, user, QUERY, top_k=3)


def test_a_binary_space_reranks_its_candidates_exactly(runtime: Runtime, tmp_path: Path) -> None:
    """HNSW over binary quantizations, bulk-loaded like any space; candidates re-ranked by exact distance."""
    rt = runtime
    rt.settings.vector_index = "binary"
    rt.settings.search_exact_max_vectors = 0  # through the binary index, not the small-space scan
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    job_ids = [submit_file(rt, p, user=user).job_id for p in write_docs(tmp_path / "docs", 3)]
    planned = {j: parse_stage(rt, j) for j in job_ids}
    for job_id, batches in planned.items():
        for batch in batches:
            embed_stage(rt, job_id, batch.first, batch.last)
    space = space_of(rt)
    assert space.index_kind == "binary" and space.index_deferred
    assert indexing.build_if_drained(rt, space.id) == "built"
    with rt.pool.connection() as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (f"{space.table_name}_hnsw",)
        ).fetchone()[0]
    assert "binary_quantize" in definition and "bit_hamming_ops" in definition
    # Every chunk is a candidate here (search_candidates exceeds them), so the re-ranked answer is exact.
    assert scores(search(rt, user, QUERY, top_k=5, mode=SearchMode.VECTOR)) == exact_top(rt, space, 5)
    hits = search(rt, user, QUERY, top_k=3, document_ids=[d for d in _documents(rt, job_ids)[:1]])
    assert hits and len({h.document_id for h in hits}) == 1


def _documents(rt: Runtime, job_ids: list) -> list:
    with rt.pool.connection() as conn:
        return [jobs.get(conn, j).document_id for j in job_ids]


def test_in_process_workers_build_a_drained_index_before_they_stop(runtime: Runtime, tmp_path: Path) -> None:
    rt = runtime
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    job = submit_file(rt, write_docs(tmp_path / "docs", 1)[0], user=user).job_id
    rt.settings.bulk_min_chunks = 0
    for batch in parse_stage(rt, job):
        embed_stage(rt, job, batch.first, batch.last)
    with rt.pool.connection() as conn, conn.transaction():
        vectors.defer_index(conn, space_of(rt))  # as a process that stopped before building it leaves it
    with serving(rt, threads=1):
        pass
    space = space_of(rt)
    assert not space.index_deferred and has_index(rt, space)
