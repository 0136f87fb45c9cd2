"""Which documents travel together, and how a shared call's bill is split: the pure decisions."""

from __future__ import annotations

import random
from uuid import uuid4

from workers.batch_plan import BYTES_PER_TOKEN, Sized, plan, shares


def test_small_documents_go_together_up_to_the_token_budget_in_order() -> None:
    docs = [Sized(uuid4(), 400 * BYTES_PER_TOKEN) for _ in range(10)]
    groups = plan(docs, max_tokens=1_000)
    assert groups == [[d.job_id for d in docs[i : i + 2]] for i in range(0, 10, 2)]


def test_documents_spread_over_as_many_messages_as_asked_when_there_are_enough() -> None:
    docs = [Sized(uuid4(), 10) for _ in range(10)]
    assert [len(g) for g in plan(docs, max_tokens=1_000, spread=4)] == [3, 3, 3, 1]
    assert [len(g) for g in plan(docs[:2], max_tokens=1_000, spread=4)] == [1, 1]


def test_a_large_document_goes_alone_and_zero_sends_every_one_alone() -> None:
    small, large, after = (Sized(uuid4(), n * BYTES_PER_TOKEN) for n in (100, 600, 100))
    assert plan([small, large, after], max_tokens=1_000) == [[large.job_id], [small.job_id, after.job_id]]
    assert plan([small, after], max_tokens=0) == [[small.job_id], [after.job_id]]


def test_shares_add_up_to_the_bill_exactly_and_follow_the_weights() -> None:
    rng = random.Random(5)
    for _ in range(2_000):
        total = rng.randrange(10**9)
        weights = [rng.choice([0, rng.randrange(10**6)]) for _ in range(rng.randint(1, 50))]
        split = shares(total, weights)
        assert sum(split) == total and all(s >= 0 for s in split)
        if sum(weights):
            for s, w in zip(split, weights, strict=True):
                assert abs(s - total * w / sum(weights)) < 1
    assert shares(10, [0, 0]) == [10, 0]
    assert shares(300, [100, 200]) == [100, 200]  # the vendor counted as we did: each its own tokens
