"""Consecutive runs of items within a count and a size limit, each run as long as fits: the requests of
an embedding call (`router.openai_real.plan_batches`) and the files of a Batch API submission
(`router.batch_packing.pack`). Pure."""

from __future__ import annotations

from collections.abc import Sequence


class TooLarge(ValueError):
    """One item alone is larger than a run may be; the caller says what that means for its items."""

    def __init__(self, index: int, size: int) -> None:
        super().__init__(f"item {index} ({size}) is larger than a run may be")
        self.index, self.size = index, size


def greedy_runs(sizes: Sequence[int], *, max_items: int, max_size: int) -> list[range]:
    """Runs of at most `max_items` items whose sizes add up to at most `max_size`, in order, greedy.

    Greedy is minimal: after k runs it has covered at least as many items as any valid plan's first k
    runs (induction: if a plan's k-th run ends at e <= g, greedy's k-th end, then its (k+1)-th run
    [e, e') fits the limits, so the sub-range [g, e') fits too and greedy's next run reaches at least
    e'). So no plan has fewer runs.
    """
    runs: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if size > max_size:
            raise TooLarge(i, size)
        if i > start and (i - start == max_items or total + size > max_size):
            runs.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs
