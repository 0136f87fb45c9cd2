"""Vector storage and search: bulk loads, the index kind of a new space, and what a search examines."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VectorSettings(BaseModel):
    """How vectors are indexed and searched."""

    # --- vector storage: bulk loads (ingest/loading.py, workers/indexing.py) ----------------------
    bulk_min_chunks: int = Field(
        default=500,
        ge=0,
        description="A backlog of at least this many chunks still to embed loads without HNSW index"
        " maintenance: the space's index is dropped and built once the backlog is down to an eighth of"
        " this (searches scan exactly meanwhile). 0: always insert into the live index.",
    )
    bulk_table_ratio: float = Field(
        default=0.5,
        ge=0,
        description="…and only when that backlog is at least this many times the vectors the space already"
        " holds, so a large space keeps its index (a search would scan it all meanwhile).",
    )
    bulk_max_defer_s: float = Field(
        default=900,
        gt=0,
        description="A deferred index is built after this long even while work keeps arriving.",
    )
    vector_index: Literal["halfvec", "binary"] = Field(
        default="halfvec",
        description="How a new embedding space indexes its vectors: halfvec, HNSW over the vectors; binary,"
        " HNSW over their binary quantization (a bit a dimension: inserts and builds several times"
        " faster), whose search_candidates nearest a search re-ranks by exact distance. A space keeps"
        " the kind it was made with.",
    )
    index_build_memory_mb: int = Field(
        default=256,
        ge=16,
        description="maintenance_work_mem of an index build (a graph in memory builds faster).",
    )

    # --- search -------------------------------------------------------------------------------------
    search_ef: int = Field(
        default=400,
        ge=10,
        le=1000,
        description="HNSW candidates a search examines (hnsw.ef_search): recall against latency.",
    )
    search_exact_max_vectors: int = Field(
        default=50_000,
        ge=0,
        description="A space holding at most this many vectors (by its statistics) is searched by an exact"
        " scan, which at that size is about as fast as HNSW and finds the true nearest. 0: always HNSW.",
    )
    search_candidates: int = Field(
        default=800,
        ge=10,
        le=1000,
        description="Binary-indexed spaces: nearest candidates by Hamming distance that a search re-ranks by"
        " exact distance (the HNSW scan keeps at least as many): recall against latency.",
    )
