"""The foundation's promise on real documents: `ingest add` a folder of them (for the shared corpus, hostile
files and all), then a search for each fact quoted from a document ranks that document first, in mock mode.
Every clone runs it on the repository's samples/; the shared corpus, when it is beside the repository."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from typer.testing import CliRunner

from ingest.cli.main import app
from ingest.config import Settings
from ingest.services.search import search
from ingest.store.users import ensure_user
from tests.corpus import CORPUS, SAMPLES, corpus_manifest, sample_manifest
from workers.runtime import Runtime

pytestmark = pytest.mark.slow


def test_samples_ingest_and_facts_rank_their_document_first(ingest_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["add", str(SAMPLES)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = [
        {**e, "sha256": hashlib.sha256((SAMPLES / e["file"]).read_bytes()).hexdigest()}
        for e in sample_manifest()
    ]
    facts_rank_first(manifest)


def test_whole_corpus_ingests_and_facts_rank_their_document_first(ingest_env: dict[str, str]) -> None:
    manifest = corpus_manifest()
    result = CliRunner().invoke(app, ["add", str(CORPUS)], catch_exceptions=False)
    # Hostile files are refused or fail with a reason, so the command reports failure; readable ones complete.
    assert result.exit_code == 1
    facts_rank_first(manifest)


def facts_rank_first(manifest: list[dict[str, Any]]) -> None:
    hits = misses = 0
    missed: list[str] = []
    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "local")
            by_sha = dict(conn.execute("SELECT sha256, status FROM documents").fetchall())
            doc_sha = dict(conn.execute("SELECT id, sha256 FROM documents").fetchall())
        for entry in manifest:
            # Every readable file completed (the same bytes twice count once).
            assert by_sha.get(entry["sha256"]) == "completed", entry["file"]
            for fact in entry["facts"]:
                top = search(rt, user, fact, top_k=1)
                if top and doc_sha[top[0].document_id] == entry["sha256"]:
                    hits += 1
                else:
                    misses += 1
                    missed.append(f"{entry['file']}: {fact[:60]}")
    assert hits / (hits + misses) >= 0.9, "\n".join(missed)
