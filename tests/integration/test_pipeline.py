"""The pipeline's stages against a real PostgreSQL: idempotent, deduplicated, completed exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.errors import UnsupportedType
from ingest.services.submit import submit_file
from ingest.store import chunks, documents, jobs, vectors
from ingest.store.users import ensure_user
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def write_text(path: Path, paragraphs: int = 40, seed: int = 0) -> Path:
    lines = []
    for p in range(paragraphs):
        words = [WORDS[(p * 7 + i * 3 + seed) % len(WORDS)] for i in range(60)]
        lines.append(f"Paragraph {p} of document {seed}. " + " ".join(words) + ".")
    path.write_text("\n\n".join(lines))
    return path


@pytest.fixture
def small_batches(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "64")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "8")
    monkeypatch.setenv("INGEST_EMBED_BATCH_CHUNKS", "4")
    return Settings(_env_file=None)


@pytest.fixture
def runtime(small_batches: Settings):
    with Runtime.open(small_batches) as rt:
        yield rt


def counts(rt: Runtime, document_id) -> tuple[int, int]:
    with rt.pool.connection() as conn:
        n_chunks = chunks.count(conn, document_id)
        space = vectors.find_space(conn, "mock-lexical-v1", rt.settings.mock_embedding_dimensions)
        n_vectors = 0
        if space is not None:
            n_vectors = conn.execute(
                f"SELECT count(*) FROM {space.table_name} v JOIN chunks c ON c.id = v.chunk_id"
                " WHERE c.document_id = %s",
                (document_id,),
            ).fetchone()[0]
    return n_chunks, n_vectors


def test_every_stage_run_twice_leaves_one_copy(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    sub = submit_file(runtime, write_text(tmp_path / "a.txt"), user=user)

    first = parse_stage(runtime, sub.job_id)
    with runtime.pool.connection() as conn:
        chunk_ids = [r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id").fetchall()]
    assert len(first) > 2  # several batches, so the redelivery paths below are exercised

    # A redelivered parse message does not parse (or pay) again: the committed chunks are kept.
    again = parse_stage(runtime, sub.job_id)
    assert again == first
    with runtime.pool.connection() as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM chunks ORDER BY id").fetchall()] == chunk_ids

    for batch in first:
        embed_stage(runtime, sub.job_id, batch.first, batch.last)
    for batch in first:  # every batch delivered twice
        embed_stage(runtime, sub.job_id, batch.first, batch.last)

    n_chunks, n_vectors = counts(runtime, sub.document_id)
    assert n_chunks == len(chunk_ids)
    assert n_vectors == n_chunks
    with runtime.pool.connection() as conn:
        job = jobs.get(conn, sub.job_id)
        doc = documents.get(conn, sub.document_id)
    assert (job.status, job.stage, job.chunks_done, job.chunks_total) == (
        "completed",
        "done",
        n_chunks,
        n_chunks,
    )
    assert doc.status == "completed"
    # After completion, a late redelivery of any stage changes nothing.
    assert parse_stage(runtime, sub.job_id) == []
    assert counts(runtime, sub.document_id) == (n_chunks, n_vectors)


def test_writing_the_same_vectors_twice_keeps_one_row_per_chunk(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    sub = submit_file(runtime, write_text(tmp_path / "a.txt", paragraphs=5), user=user)
    parse_stage(runtime, sub.job_id)
    embedder = runtime.router.search_embedder()
    with runtime.pool.connection() as conn:
        pending = chunks.pending_in_range(conn, sub.document_id, 0, 10_000)
        result = embedder.embed([c.text for c in pending])
        space = vectors.ensure_space(conn, embedder.model, embedder.dimensions, simulated=True)
        for _ in range(2):
            with conn.transaction():
                vectors.write(conn, space, [c.id for c in pending], result.vectors)
        rows = conn.execute(f"SELECT count(*) FROM {space.table_name}").fetchone()[0]
    assert rows == len(pending)


def test_concurrent_batches_complete_the_job_exactly_once(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    sub = submit_file(runtime, write_text(tmp_path / "a.txt", paragraphs=60), user=user)
    batches = parse_stage(runtime, sub.job_id)
    completions: list[bool] = []
    barrier = threading.Barrier(len(batches))

    def run(batch) -> None:
        barrier.wait()
        completions.append(embed_stage(runtime, sub.job_id, batch.first, batch.last))

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert completions.count(True) == 1
    with runtime.pool.connection() as conn:
        assert jobs.get(conn, sub.job_id).status == "completed"


def test_same_bytes_from_same_user_is_one_document(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        ada, bob = ensure_user(conn, "ada"), ensure_user(conn, "bob")
    path = write_text(tmp_path / "a.txt", paragraphs=3)
    copy = tmp_path / "renamed.txt"
    copy.write_bytes(path.read_bytes())

    first = submit_file(runtime, path, user=ada)
    second = submit_file(runtime, copy, user=ada)
    other_user = submit_file(runtime, path, user=bob)

    assert (second.duplicate, second.document_id, second.job_id) == (True, first.document_id, first.job_id)
    assert not first.duplicate and not other_user.duplicate
    assert other_user.document_id != first.document_id
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2


def test_a_refused_file_leaves_nothing_behind(runtime: Runtime, tmp_path: Path) -> None:
    png = tmp_path / "scan.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    with pytest.raises(UnsupportedType):
        submit_file(runtime, png, user=user)
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
    assert not runtime.settings.blob_dir.exists() or not any(
        p.is_file() for p in runtime.settings.blob_dir.rglob("*")
    )


def test_a_batch_whose_job_fails_while_it_embeds_stores_nothing(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from router.embedder_mock import MockEmbedder
    from workers.states import fail_job

    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    sub = submit_file(runtime, write_text(tmp_path / "a.txt"), user=user)
    batch = parse_stage(runtime, sub.job_id)[0]
    embed = MockEmbedder.embed

    def embed_while_another_batch_fails_the_job(self: MockEmbedder, texts):  # type: ignore[no-untyped-def]
        fail_job(runtime, sub.job_id, "another batch gave up")
        return embed(self, texts)

    monkeypatch.setattr(MockEmbedder, "embed", embed_while_another_batch_fails_the_job)
    assert embed_stage(runtime, sub.job_id, batch.first, batch.last) is False
    with runtime.pool.connection() as conn:
        job = jobs.get(conn, sub.job_id)
    assert (job.status, job.error) == ("failed", "another batch gave up")
    assert counts(runtime, sub.document_id) == (0, 0)  # nothing of a failed document is stored
