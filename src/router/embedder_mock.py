"""A deterministic lexical embedder: the stand-in for OpenAI embeddings in tests, demos and mock mode.

A text becomes a signed feature-hashing vector of its words and word pairs. Words are normalised
(NFKC, casefold, punctuation dropped), each feature gets sublinear term frequency (1 + ln tf), and
common English function words count for little, so a sentence quoted from a document lands nearest the
chunk that contains it. Features are hashed with blake2b (stable across processes, unlike `hash()`).

A text with no words (empty, whitespace, punctuation only) gets one fixed unit vector, the same for
every such text, so every row is finite and unit length as real embeddings are.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from ingest.tokens import count_tokens
from router.protocols import EmbedResult

_WORD = re.compile(r"\w+")
_LONG_WORD = 40
_PIECE = 6
# Weight of a function word, and of a word pair, relative to a content word.
_STOP_WEIGHT = 0.2
_PAIR_WEIGHT = 1.5
# Rows are made in blocks of at most this many cells, which bounds the scratch memory of one block.
_BLOCK_CELLS = 1 << 22
_U64 = np.uint64
_PAIR_SEED = _U64(0x9E3779B97F4A7C15)
# The feature of a text without words.
_EMPTY = int.from_bytes(hashlib.blake2b(b"\x00mock-lexical-v1:empty", digest_size=8).digest(), "little")

_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you
    your yours yourself yourselves""".split()
)


@functools.lru_cache(maxsize=1 << 18)
def _word_hash(word: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads combined hashes over all 64 bits (uint64 arithmetic wraps)."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _words(text: str) -> list[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if not any(len(w) > _LONG_WORD for w in words):
        return words
    # A "word" this long is an identifier, a hash or base64: its pieces are its features. As one
    # feature it would make a one-hot vector, and many of those tangle an HNSW graph.
    return [p for w in words for p in ((w,) if len(w) <= _LONG_WORD else _pieces(w))]


def _pieces(word: str) -> list[str]:
    return [word[i : i + _PIECE] for i in range(0, len(word), _PIECE)]


def embed_texts(texts: Sequence[str], dimensions: int) -> np.ndarray:
    """Unit-length float32 rows, one per text, in `dimensions` dimensions (any positive number)."""
    if dimensions < 1:
        raise ValueError("dimensions must be positive")
    out = np.empty((len(texts), dimensions), dtype=np.float32)
    step = max(1, _BLOCK_CELLS // dimensions)
    for start in range(0, len(texts), step):
        out[start : start + step] = _embed_block(texts[start : start + step], dimensions)
    return out


def _embed_block(texts: Sequence[str], dimensions: int) -> np.ndarray:
    rows = len(texts)
    words = [_words(t) for t in texts]
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=rows)
    flat = list(itertools.chain.from_iterable(words))
    vocabulary = {w: i for i, w in enumerate(dict.fromkeys(flat))}
    ids = np.fromiter(map(vocabulary.__getitem__, flat), dtype=np.int64, count=len(flat))
    known = np.fromiter((_word_hash(w) for w in vocabulary), dtype=_U64, count=len(vocabulary))
    stop = np.fromiter((w in _STOP_WORDS for w in vocabulary), dtype=bool, count=len(vocabulary))

    hashes, is_stop = known[ids], stop[ids]
    row = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    word_weight = np.where(is_stop, _STOP_WEIGHT, 1.0)

    # Pairs of neighbouring words of the same text; a pair of two function words is weighted as one.
    same = row[:-1] == row[1:]
    pair_hashes = _mix(hashes[:-1][same] * _PAIR_SEED + hashes[1:][same])
    pair_weight = np.where(is_stop[:-1][same] & is_stop[1:][same], _STOP_WEIGHT, 1.0) * _PAIR_WEIGHT

    feature = np.concatenate([hashes, pair_hashes])
    feature_row = np.concatenate([row, row[:-1][same]])
    weight = np.concatenate([word_weight, pair_weight])

    # Sublinear tf: each of a feature's tf occurrences in a row adds weight * (1 + ln tf) / tf.
    key = _mix(feature ^ (feature_row.astype(_U64) * _PAIR_SEED))
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    tf = counts[inverse].astype(np.float64)
    weight = weight * (1.0 + np.log(tf)) / tf

    index = (feature >> _U64(1)) % _U64(dimensions)
    sign = 1.0 - 2.0 * (feature & _U64(1)).astype(np.float64)
    cells = feature_row * dimensions + index.astype(np.int64)
    vectors = np.bincount(cells, weights=sign * weight, minlength=rows * dimensions).reshape(rows, dimensions)

    norms = np.linalg.norm(vectors, axis=1)
    empty = norms == 0.0  # no words, or (vanishingly rare) features that cancelled out exactly
    vectors[empty] = 0.0
    vectors[empty, (_EMPTY >> 1) % dimensions] = 1.0
    norms[empty] = 1.0
    return (vectors / norms[:, None]).astype(np.float32)


class MockEmbedder:
    """Embedder protocol over `embed_texts`; bills tokens exactly as OpenAI counts them (cl100k_base)."""

    model = "mock-lexical-v1"

    def __init__(self, dimensions: int = 1536) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be positive")
        self.dimensions = dimensions

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(
            vectors=embed_texts(texts, self.dimensions),
            prompt_tokens=sum(count_tokens(texts)),
            requests=1,
            simulated=True,
        )
