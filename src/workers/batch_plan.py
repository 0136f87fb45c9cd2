"""Which documents travel together, and how one call's bill is shared among them: pure decisions.

A message for many small documents saves the per-message and per-commit costs that dominate a small
document's time; a large document still goes alone (its own chunks fill embedding requests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

# What one token of a document's bytes is, roughly, for sizing batches before anything is parsed.
BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Sized:
    job_id: UUID
    size: int  # the document's bytes


def plan(documents: Sequence[Sized], max_tokens: int, *, spread: int = 1) -> list[list[UUID]]:
    """Group jobs into messages, in order: small documents together up to `max_tokens` (estimated from
    their size), and in at least `spread` messages when there are that many documents (so as many workers
    share them); a document estimated above half of `max_tokens` goes alone, and every one does at 0."""
    most = max(1, -(-len(documents) // max(1, spread)))  # documents per message, at most
    groups: list[list[UUID]] = []
    current: list[UUID] = []
    tokens = 0
    for doc in documents:
        estimate = max(1, doc.size // BYTES_PER_TOKEN)
        if max_tokens == 0 or estimate > max_tokens // 2:
            groups.append([doc.job_id])
            continue
        if current and (tokens + estimate > max_tokens or len(current) == most):
            groups.append(current)
            current, tokens = [], 0
        current.append(doc.job_id)
        tokens += estimate
    if current:
        groups.append(current)
    return groups


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights`, in whole units that sum to `total` exactly (largest
    remainders), so the per-document charges of one call add up to what the vendor billed for it."""
    if not weights:
        return []
    weight = sum(weights)
    if weight == 0:
        return [total] + [0] * (len(weights) - 1)
    floors = [total * w // weight for w in weights]
    left = total - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight), i))
    for i in order[:left]:
        floors[i] += 1
    return floors
