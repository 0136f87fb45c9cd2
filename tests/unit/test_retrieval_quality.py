"""The product's promise: search a sentence quoted from a document, and that document comes first.

Every readable document is extracted, chunked (512/64) and embedded with the mock embedder; each fact is
embedded as a query and all chunks of all documents are ranked by cosine. Run on the repository's samples/
(facts in tests/fixtures/samples-facts.json) and, when it is beside the repository, the shared corpus.
A file that `ingest.formats` refuses with UnsupportedType (a type the product deliberately does not
accept) is left out with its facts; any other refusal fails the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ingest.chunking import chunk_document
from ingest.errors import UnsupportedType
from ingest.formats import extract
from router.embedder_mock import MockEmbedder
from tests.corpus import CORPUS, SAMPLES, corpus_manifest, sample_manifest

REQUIRED = 0.90


def test_a_quoted_fact_ranks_its_sample_first() -> None:
    ranks_first(SAMPLES, sample_manifest(), least_facts=10)


def test_a_quoted_fact_ranks_its_corpus_document_first() -> None:
    ranks_first(CORPUS, corpus_manifest(), least_facts=40)


def ranks_first(root: Path, manifest: list[dict[str, Any]], *, least_facts: int) -> None:
    embedder = MockEmbedder()
    chunk_texts: list[str] = []
    chunk_files: list[str] = []
    facts: list[tuple[str, str]] = []
    for entry in manifest:
        path = root / entry["file"]
        try:
            document = extract(path, filename=path.name)
        except UnsupportedType:
            continue
        for chunk in chunk_document(document, max_tokens=512, overlap=64):
            chunk_texts.append(chunk.text)
            chunk_files.append(entry["file"])
        facts += [(fact, entry["file"]) for fact in entry["facts"]]
    assert len(facts) >= least_facts

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
