"""When a space's HNSW index should wait: pure decisions over counts, for workers/indexing.py.

Inserting into a live HNSW index costs a graph search and several page updates per vector; building
the index over rows already loaded costs a fraction of that per vector (measured in docs/benchmarks.md).
So when the work still to embed is large, both absolutely and against the vectors the space already
holds, the index is dropped, the backlog is loaded bare, and the index is built once it has drained.
Meanwhile searches read the table exactly: correct, and slower as the table grows, which is why the
backlog must be large relative to the table (then the table is small relative to what is coming).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backlog:
    pending_chunks: int  # chunks without a vector, in the open jobs already chunked
    chunked_jobs: int  # open jobs already chunked
    unchunked_jobs: int  # open jobs not chunked yet (their size unknown)

    def estimated_chunks(self) -> int:
        """Pending chunks, and for each job not chunked yet as many as the chunked ones average."""
        per_job = math.ceil(self.pending_chunks / self.chunked_jobs) if self.chunked_jobs else 1
        return self.pending_chunks + self.unchunked_jobs * per_job


@dataclass(frozen=True, slots=True)
class BulkPolicy:
    min_chunks: int  # 0: never defer the index
    table_ratio: float  # the backlog must be at least this many times the rows already stored
    max_defer_s: float  # a deferred index is built after this long even if work keeps coming

    def rows_that_matter(self, backlog_chunks: int) -> int:
        """Counting the table's rows further than this cannot change the decision."""
        return math.floor(backlog_chunks / self.table_ratio) + 1 if self.table_ratio > 0 else 1

    def worth_trying(self, backlog_chunks: int) -> bool:
        return self.min_chunks > 0 and backlog_chunks >= self.min_chunks

    def defer_index(self, backlog_chunks: int, table_rows: int) -> bool:
        """Whether loading this backlog without the index, then building it, beats inserting live."""
        return self.worth_trying(backlog_chunks) and backlog_chunks >= self.table_ratio * table_rows

    def build_now(self, deferred_s: float | None, backlog_chunks: int) -> bool:
        """Build a deferred index once the backlog has (nearly) drained: what still comes waits for the
        build and then goes in live. A stream that never drains gets its index after max_defer_s."""
        if deferred_s is None:
            return False
        return backlog_chunks <= self.min_chunks // 8 or deferred_s >= self.max_defer_s
