"""Reciprocal rank fusion and the keyword plan: pure functions over plain data."""

from __future__ import annotations

import math
from uuid import uuid4

from ingest.fusion import fuse
from ingest.store.keyword import DF_CAP, Term, idf, plan, tsquery_literal
from ingest.store.search import Hit

DOC = uuid4()


def _hits(*ids: int) -> list[Hit]:
    return [Hit(DOC, i, "f.txt", f"chunk {i}", 0.0, {}) for i in ids]


def test_a_chunk_high_in_both_lists_beats_one_first_in_one_list() -> None:
    fused = fuse([(_hits(1, 2, 3), 1.0), (_hits(4, 2, 5), 1.0)])
    assert [h.chunk_id for h in fused][:1] == [2]
    assert {h.chunk_id for h in fused} == {1, 2, 3, 4, 5}


def test_first_in_every_list_scores_one_and_scores_fall() -> None:
    fused = fuse([(_hits(7, 8), 1.0), (_hits(7, 9), 0.3)])
    assert fused[0].chunk_id == 7 and fused[0].score == 1.0
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_a_weight_decides_between_two_lists_that_disagree() -> None:
    assert fuse([(_hits(1), 1.0), (_hits(2), 0.3)])[0].chunk_id == 1
    assert fuse([(_hits(1), 0.3), (_hits(2), 1.0)])[0].chunk_id == 2


def test_idf_is_higher_for_rarer_terms_and_never_negative() -> None:
    assert idf(1, 1000) > idf(10, 1000) > idf(500, 1000) > 0
    assert idf(1000, 1000) > 0
    assert math.isclose(idf(0, 0), math.log(2))


def test_plan_matches_rare_terms_any_and_falls_back_to_all_common_ones() -> None:
    rare = plan([Term("zeppelin", 5, 3), Term("ledger", 9, 40), Term("use", 11, DF_CAP)], chunks=100_000)
    assert rare is not None and rare.match == "'ledger' | 'zeppelin'" or rare.match == "'zeppelin' | 'ledger'"
    assert rare.weights.startswith("{5:") and rare.weights.count(":") == 3  # every present term weighs
    common = plan([Term("use", 1, DF_CAP), Term("file", 2, DF_CAP)], chunks=100_000)
    assert common is not None and common.match == "'use' & 'file'"
    assert plan([Term("absent", 3, 0)], chunks=10) is None


def test_a_lexeme_is_quoted_so_nothing_in_it_is_an_operator() -> None:
    assert tsquery_literal("o'reilly") == "'o''reilly'"
    assert tsquery_literal("a\\b|c") == "'a\\\\b|c'"
