"""Embedding reuse: an unchanged chunk is never paid for twice by its user, however often they ingest it;
another user's text is never served from it (the cache is per user)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.services.submit import submit_file
from ingest.store.users import ensure_user
from router.embedder_mock import MockEmbedder
from router.protocols import EmbedResult
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime


class CountingEmbedder(MockEmbedder):
    """The mock embedder, counting calls and texts: what a vendor would have been sent."""

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self.calls = 0
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.calls += 1
        self.texts += len(texts)
        return super().embed(texts)


def corpus(folder: Path, docs: int, *, edited: int | None = None) -> list[Path]:
    folder.mkdir()
    paths = []
    for d in range(docs):
        paragraphs = [
            f"Paragraph {p} of file {d}: "
            + " ".join(f"w{(d * 31 + p * 7 + i) % 97}" for i in range(40))
            + "."
            for p in range(12)
        ]
        if d == edited:
            paragraphs[5] = "This paragraph was rewritten for the second version and says something new."
        path = folder / f"doc-{d}.txt"
        path.write_text("\n\n".join(paragraphs))
        paths.append(path)
    return paths


@pytest.fixture
def runtime(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "96")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "0")
    monkeypatch.setenv("INGEST_EMBED_BATCH_CHUNKS", "4")
    with Runtime.open(Settings(_env_file=None)) as rt:
        counting = CountingEmbedder(rt.settings.mock_embedding_dimensions)
        rt.router._mock_embedder = counting  # the client mock mode routes every embedding call to
        yield rt, counting


def ingest(rt: Runtime, paths: list[Path], owner: str) -> None:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, owner)
    for path in paths:
        job_id = submit_file(rt, path, user=user).job_id
        for batch in parse_stage(rt, job_id):
            embed_stage(rt, job_id, batch.first, batch.last)
        with rt.pool.connection() as conn:
            assert (
                conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()[0] == "completed"
            )


def test_a_corpus_ingested_again_by_its_user_makes_no_embedding_call(runtime, tmp_path: Path) -> None:
    rt, counting = runtime
    paths = corpus(tmp_path / "corpus", 4)
    ingest(rt, paths, "ada")
    first_calls, first_texts = counting.calls, counting.texts
    assert first_calls > 4 and first_texts > 0
    assert rt.router.meter.report().saved.chunks == 0

    # The same texts from the same user under new files (new bytes, new documents): all from the cache.
    again = corpus(tmp_path / "again", 4)
    for path in again:
        path.write_text(path.read_text() + "\n")
    ingest(rt, again, "ada")
    assert (counting.calls, counting.texts) == (first_calls, first_texts)

    with rt.pool.connection() as conn:
        charged = conn.execute(
            "SELECT count(*), sum((usage->>'tokens')::bigint) FROM cost_entries"
            " WHERE stage = 'embed' AND state = 'charged'"
        ).fetchone()
    assert charged[0] == first_calls  # no ledger entry for the second ingest's batches
    saved = rt.router.meter.report().saved
    assert saved.chunks == first_texts and saved.tokens == charged[1]
    assert saved.simulated_usd > Decimal(0) and saved.usd == Decimal(0)  # mock space: shadow savings

    # Another user's upload of the same texts is embedded and charged in full: nothing served across users.
    ingest(rt, paths, "grace")
    assert (counting.calls, counting.texts) == (2 * first_calls, 2 * first_texts)
    assert rt.router.meter.report().saved.chunks == first_texts
    with rt.pool.connection() as conn:
        searchable = conn.execute(
            "SELECT count(*) FROM chunks c JOIN vectors_1 v ON v.chunk_id = c.id"
            " JOIN documents d ON d.id = c.document_id JOIN users u ON u.id = d.owner_id WHERE u.name = 'grace'"
        ).fetchone()[0]
    assert searchable == first_texts


def test_an_edit_pays_only_for_the_changed_chunks(runtime, tmp_path: Path) -> None:
    rt, counting = runtime
    ingest(rt, corpus(tmp_path / "v1", 3), "ada")
    before = counting.texts
    ingest(rt, corpus(tmp_path / "v2", 3, edited=1), "ada")
    assert counting.texts - before == 1  # one paragraph changed, one chunk sent


def test_a_text_repeated_in_a_batch_is_sent_once(runtime, tmp_path: Path) -> None:
    rt, counting = runtime
    path = tmp_path / "repeats.txt"
    path.write_text("\n\n".join(["The same paragraph, again and again, " + "word " * 70] * 4))
    ingest(rt, [path], "ada")
    with rt.pool.connection() as conn:
        n_chunks = conn.execute("SELECT count(*) FROM chunks WHERE space_id IS NOT NULL").fetchone()[0]
    assert n_chunks == 4 and counting.texts == 1
    assert rt.router.meter.report().saved.chunks == 3
