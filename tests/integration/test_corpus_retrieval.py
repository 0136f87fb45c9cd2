"""The foundation's promise on real documents: `ingest add` the whole sample corpus (hostile files and all),
then a search for each fact quoted in its MANIFEST ranks the fact's document first, in mock mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli.main import app
from ingest.config import Settings
from ingest.services.search import search
from ingest.store.users import ensure_user
from workers.runtime import Runtime

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus-sample"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared sample corpus is not beside the repository")
def test_whole_corpus_ingests_and_facts_rank_their_document_first(ingest_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["add", str(CORPUS)], catch_exceptions=False)
    # Hostile files are refused or fail with a reason, so the command reports failure; readable ones complete.
    assert result.exit_code == 1
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    hits = misses = 0
    missed: list[str] = []
    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "local")
            by_sha = dict(conn.execute("SELECT sha256, status FROM documents").fetchall())
            doc_sha = dict(conn.execute("SELECT id, sha256 FROM documents").fetchall())
        for entry in manifest:
            # Every readable file of the corpus completed (the same bytes twice count once).
            assert by_sha.get(entry["sha256"]) == "completed", entry["file"]
            for fact in entry["facts"]:
                top = search(rt, user, fact, top_k=1)
                if top and doc_sha[top[0].document_id] == entry["sha256"]:
                    hits += 1
                else:
                    misses += 1
                    missed.append(f"{entry['file']}: {fact[:60]}")
    assert hits / (hits + misses) >= 0.9, "\n".join(missed)
