"""Weighted reciprocal rank fusion: one ranking out of several, each adding weight / (k + rank) for a chunk.

Ranks, not scores, are fused: a cosine similarity and a BM25 score share no scale. k damps the gap
between neighbouring ranks; 10 (rather than the paper's 60) and the weights of search.py were chosen on
half of the sample questions and checked on the other half (docs/benchmarks.md). The fused score is
divided by its highest possible value, so a chunk ranked first by every list scores 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ingest.store.search import Hit

RRF_K = 10


def fuse(rankings: Sequence[tuple[Sequence[Hit], float]], *, k: int = RRF_K) -> list[Hit]:
    """The chunks of every (ranking, weight), best fused score first; a tie keeps the order first seen."""
    scores: dict[int, float] = {}
    hits: dict[int, Hit] = {}
    for ranking, weight in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
            hits.setdefault(hit.chunk_id, hit)
    top = sum(weight for _, weight in rankings) / (k + 1)
    order = sorted(scores, key=lambda chunk_id: -scores[chunk_id])  # stable: first seen wins a tie
    return [replace(hits[chunk_id], score=round(scores[chunk_id] / top, 6)) for chunk_id in order]
