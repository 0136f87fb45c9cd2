"""plan_batches: consecutive batches within the API's limits, and no plan has fewer.

Minimality is checked against an exhaustive optimum (dynamic programming over every split into
consecutive batches) on thousands of random instances with small limits, where ties and edge cases are
dense.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

import pytest

from router.openai_real import (
    MAX_INPUTS_PER_REQUEST,
    MAX_TOKENS_PER_INPUT,
    MAX_TOKENS_PER_REQUEST,
    plan_batches,
)


def fewest_batches(counts: Sequence[int], max_inputs: int, max_tokens: int) -> int:
    """The true minimum: best[i] = fewest batches covering counts[i:]."""

    @functools.cache
    def best(i: int) -> int:
        if i == len(counts):
            return 0
        options, tokens = [], 0
        for j in range(i, min(len(counts), i + max_inputs)):
            tokens += counts[j]
            if tokens > max_tokens:
                break
            options.append(1 + best(j + 1))
        return min(options)

    return best(0)


def assert_valid(batches: list[range], counts: Sequence[int], max_inputs: int, max_tokens: int) -> None:
    # Consecutive, in order, covering every input once.
    assert [i for batch in batches for i in batch] == list(range(len(counts)))
    for batch in batches:
        assert 1 <= len(batch) <= max_inputs
        assert batch.step == 1
        assert sum(counts[i] for i in batch) <= max_tokens


@pytest.mark.parametrize("seed", range(40))
def test_greedy_is_valid_and_minimal_on_random_instances(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        max_inputs = rng.randint(1, 6)
        max_tokens = rng.randint(1, 40)
        counts = [rng.randint(0, max_tokens) for _ in range(rng.randint(0, 30))]
        batches = plan_batches(counts, max_inputs, max_tokens)
        assert_valid(batches, counts, max_inputs, max_tokens)
        assert len(batches) == fewest_batches(tuple(counts), max_inputs, max_tokens)


def test_the_api_limits_by_default() -> None:
    assert [len(b) for b in plan_batches([1] * 4097)] == [2048, 2048, 1]
    # 36 inputs of 8,192 tokens make 294,912 tokens; a 37th would pass 300,000.
    full = plan_batches([MAX_TOKENS_PER_INPUT] * 100)
    assert [len(b) for b in full] == [36, 36, 28]
    assert MAX_INPUTS_PER_REQUEST == 2048 and MAX_TOKENS_PER_REQUEST == 300_000


def test_edges() -> None:
    assert plan_batches([]) == []
    assert plan_batches([5]) == [range(1)]
    assert plan_batches([10, 0, 0, 10], max_inputs=10, max_tokens_per_request=10) == [range(3), range(3, 4)]
    assert plan_batches([3, 3, 3], max_inputs=1, max_tokens_per_request=100) == [
        range(1),
        range(1, 2),
        range(2, 3),
    ]


def test_an_input_larger_than_a_request_is_refused() -> None:
    with pytest.raises(ValueError, match="input 1"):
        plan_batches([1, 11], max_tokens_per_request=10)
    with pytest.raises(ValueError):
        plan_batches([1], max_inputs=0)
