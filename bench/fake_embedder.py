"""The one fake embedder every pipeline in the benchmark uses, so only pipeline overhead differs.

A text's vector is a unit Gaussian vector seeded by the blake2b hash of its whitespace-normalised text:
deterministic across processes and environments, about 10 µs per 1,536-d vector, numpy only (the peers'
environment imports this file too). Billed tokens are not computed here: each pipeline counts its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

MODEL = "bench-fake-v1"


def embed(texts: Sequence[str], dimensions: int) -> np.ndarray:
    out = np.empty((len(texts), dimensions), dtype=np.float32)
    for i, text in enumerate(texts):
        seed = int.from_bytes(
            hashlib.blake2b(" ".join(text.split()).encode(), digest_size=8).digest(), "little"
        )
        v = np.random.default_rng(seed).standard_normal(dimensions, dtype=np.float32)
        out[i] = v / np.linalg.norm(v)
    return out
