"""How a search ranks chunks: the choice the API's `mode` and the CLI's `--mode` make."""

from __future__ import annotations

from enum import StrEnum


class SearchMode(StrEnum):
    HYBRID = "hybrid"  # keyword and vector rankings fused (the default)
    VECTOR = "vector"  # nearest embeddings
    KEYWORD = "keyword"  # BM25 over the query's words
