"""The product's promise: search a sentence quoted from a document, and that document comes first.

Every readable document of the sample corpus is extracted, chunked (512/64) and embedded with the mock
embedder; each fact of MANIFEST.json is embedded as a query and all chunks of all documents are ranked
by cosine. A file that `ingest.formats` refuses with UnsupportedType (a type the product deliberately
does not accept) is left out with its facts; any other refusal fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import chunk_document
from ingest.errors import UnsupportedType
from router.embedder_mock import MockEmbedder

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus-sample"
REQUIRED = 0.90

pytestmark = pytest.mark.skipif(not (CORPUS / "MANIFEST.json").is_file(), reason="corpus sample not present")


def test_a_quoted_fact_ranks_its_document_first() -> None:
    from ingest.formats import extract

    embedder = MockEmbedder()
    chunk_texts: list[str] = []
    chunk_files: list[str] = []
    facts: list[tuple[str, str]] = []
    for entry in json.loads((CORPUS / "MANIFEST.json").read_text()):
        path = CORPUS / entry["file"]
        try:
            document = extract(path, filename=path.name)
        except UnsupportedType:
            continue
        for chunk in chunk_document(document, max_tokens=512, overlap=64):
            chunk_texts.append(chunk.text)
            chunk_files.append(entry["file"])
        facts += [(fact, entry["file"]) for fact in entry["facts"]]
    assert len(facts) >= 40

    chunks = embedder.embed(chunk_texts).vectors
    queries = embedder.embed([fact for fact, _ in facts]).vectors
    best = np.argmax(queries @ chunks.T, axis=1)

    misses = [
        f"{file}: {fact!r} -> {chunk_files[b]}"
        for (fact, file), b in zip(facts, best, strict=True)
        if chunk_files[b] != file
    ]
    score = 1 - len(misses) / len(facts)
    print(f"retrieval: {len(facts) - len(misses)}/{len(facts)} facts rank their document first ({score:.1%})")
    assert score >= REQUIRED, f"{score:.1%} < {REQUIRED:.0%}; misses:\n" + "\n".join(misses)
