"""Where the shared sample corpus is, and how a test that needs it skips, saying why, when it is absent.

The corpus lives beside the repository (`../shared/corpus-sample`), not in it: a bare clone has none.
Nothing here reads it at import time, so collecting the tests never fails on its account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus-sample"
HOSTILE = CORPUS / "hostile"
ABSENT = f"needs the shared sample corpus, which is not beside the repository ({CORPUS})"

needs_corpus = pytest.mark.skipif(not (CORPUS / "MANIFEST.json").is_file(), reason=ABSENT)


def corpus_manifest() -> list[dict[str, Any]]:
    """The corpus's MANIFEST.json entries; skips the calling test when the corpus is absent."""
    path = CORPUS / "MANIFEST.json"
    if not path.is_file():
        pytest.skip(ABSENT)
    entries: list[dict[str, Any]] = json.loads(path.read_text())
    return entries


def corpus_params(relative: str, pick: str | None = None) -> list[Any]:
    """Parameters for a test run once per entry of a corpus manifest (`relative` to the corpus; `pick`
    a key of the JSON object holding the entries), or one skipped parameter saying why when absent."""
    path = CORPUS / relative
    if not path.is_file():
        return [pytest.param(None, id="no-corpus", marks=pytest.mark.skip(reason=ABSENT))]
    loaded = json.loads(path.read_text())
    entries: list[dict[str, Any]] = loaded[pick] if pick else loaded
    return [pytest.param(e, id=str(e.get("id") or e.get("file"))) for e in entries]


SAMPLES = REPO / "samples"
SAMPLE_FACTS = Path(__file__).resolve().parent / "fixtures" / "samples-facts.json"


def sample_manifest() -> list[dict[str, Any]]:
    """The repository's own samples/ described like the corpus's MANIFEST.json (file, format, facts):
    the documents every clone checks sniffing, extraction and retrieval on."""
    entries: list[dict[str, Any]] = json.loads(SAMPLE_FACTS.read_text())
    return entries
