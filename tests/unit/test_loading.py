"""When a space's HNSW index waits for a backlog to load: the pure decisions of ingest/loading.py."""

from __future__ import annotations

from workers.bulk_policy import Backlog, BulkPolicy

RULES = BulkPolicy(min_chunks=500, table_ratio=0.5, max_defer_s=900)


def test_jobs_not_chunked_yet_count_as_the_chunked_ones_average() -> None:
    assert Backlog(pending_chunks=120, chunked_jobs=10, unchunked_jobs=50).estimated_chunks() == 120 + 50 * 12
    assert Backlog(pending_chunks=0, chunked_jobs=0, unchunked_jobs=7).estimated_chunks() == 7


def test_a_large_backlog_into_a_small_table_defers_the_index() -> None:
    assert RULES.defer_index(backlog_chunks=600, table_rows=0)
    assert RULES.defer_index(backlog_chunks=600, table_rows=1200)
    assert not RULES.defer_index(backlog_chunks=600, table_rows=1201)  # the table would scan too long
    assert not RULES.defer_index(backlog_chunks=499, table_rows=0)  # too little to pay for a build


def test_zero_min_chunks_never_defers() -> None:
    never = BulkPolicy(min_chunks=0, table_ratio=0.5, max_defer_s=900)
    assert not never.worth_trying(10**9) and not never.defer_index(10**9, 0)


def test_counting_rows_stops_where_the_answer_is_known() -> None:
    rows = RULES.rows_that_matter(600)
    assert RULES.defer_index(600, rows - 1) and not RULES.defer_index(600, rows)


def test_the_index_is_built_when_the_backlog_has_drained_or_waited_too_long() -> None:
    assert not RULES.build_now(deferred_s=None, backlog_chunks=0)  # live already
    assert RULES.build_now(deferred_s=5, backlog_chunks=0)
    assert RULES.build_now(deferred_s=5, backlog_chunks=500 // 8)
    assert not RULES.build_now(deferred_s=5, backlog_chunks=400)
    assert RULES.build_now(deferred_s=900, backlog_chunks=400)  # a stream that never drains
