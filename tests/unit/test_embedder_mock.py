from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.tokens import count_tokens
from router.embedder_mock import MockEmbedder, embed_texts
from router.protocols import Embedder, EmbedResult

SRC = Path(__file__).resolve().parents[2] / "src"

PASSAGES = [
    (
        "The harbour master keeps a ledger of every ship that enters the port. Each entry records the "
        "vessel's name, its tonnage and the cargo it carries. Storms in winter close the harbour for weeks."
    ),
    (
        "Bread is made from flour, water, salt and yeast. The dough rises twice before it is baked in a hot "
        "oven. A good crust needs steam during the first minutes of baking."
    ),
    (
        "The committee meets on the first Monday of each month. Minutes of the meeting are sent to all "
        "members within a week. A quorum is half of the members plus one."
    ),
    (
        "Glaciers form where snow accumulates faster than it melts. Over centuries the snow compacts into "
        "ice that flows slowly downhill under its own weight, carving valleys as it moves."
    ),
]


@pytest.mark.parametrize("dimensions", [16, 17, 256, 1536, 4000])
def test_rows_are_finite_unit_float32(dimensions: int) -> None:
    vectors = embed_texts([*PASSAGES, "", "   ", "?!", "ünïcödé 漢字 😀"], dimensions)
    assert vectors.shape == (len(PASSAGES) + 4, dimensions)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_texts_without_words_share_one_fixed_unit_vector() -> None:
    vectors = embed_texts(["", "   \n", "... --- !!!", PASSAGES[0]], 64)
    assert (vectors[0] == vectors[1]).all() and (vectors[1] == vectors[2]).all()
    assert np.count_nonzero(vectors[0]) == 1
    assert abs(float(vectors[0] @ vectors[3])) < 0.5


def test_no_texts() -> None:
    assert embed_texts([], 32).shape == (0, 32)


def test_words_are_normalised() -> None:
    a, b, c = embed_texts(["Hello, World!", "hello world", "ＨＥＬＬＯ   world"], 128)
    assert np.allclose(a, b) and np.allclose(b, c)  # case, punctuation, NFKC width


def test_same_text_same_vector_in_another_process() -> None:
    """Stable hashing: a vector stored yesterday still matches a query embedded today."""
    script = (
        "import hashlib, sys; from router.embedder_mock import embed_texts; "
        f"sys.stdout.write(hashlib.sha256(embed_texts({PASSAGES!r}, 1536).tobytes()).hexdigest())"
    )
    here = hashlib.sha256(embed_texts(PASSAGES, 1536).tobytes()).hexdigest()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == here


def test_a_quoted_sentence_finds_its_passage() -> None:
    vectors = embed_texts(PASSAGES, 1536)
    for index, passage in enumerate(PASSAGES):
        for sentence in passage.split(". "):
            query = embed_texts([sentence], 1536)[0]
            assert int(np.argmax(vectors @ query)) == index, sentence


def test_batches_give_the_same_rows_as_single_texts() -> None:
    # 4000 dimensions make blocks of about a thousand rows, so this batch spans several blocks.
    texts = [f"{PASSAGES[i % 4]} item {i}" for i in range(2500)]
    batch = embed_texts(texts, 4000)
    for i in (0, 1, 1047, 1048, 1049, 2499):
        assert np.array_equal(batch[i], embed_texts([texts[i]], 4000)[0])


def test_mock_embedder_implements_the_protocol() -> None:
    embedder = MockEmbedder(dimensions=256)
    assert isinstance(embedder, Embedder)
    assert embedder.model == MockEmbedder.model == "mock-lexical-v1"
    assert MockEmbedder().dimensions == 1536
    result = embedder.embed(PASSAGES)
    assert isinstance(result, EmbedResult)
    assert result.vectors.shape == (4, 256)
    assert np.array_equal(result.vectors, embed_texts(PASSAGES, 256))
    assert result.prompt_tokens == sum(count_tokens(PASSAGES))
    assert MockEmbedder().embed(["hello world"]).prompt_tokens == 2  # cl100k_base, as OpenAI bills
    assert result.requests == 1 and result.simulated is True


def test_rejects_nonsense_dimensions() -> None:
    with pytest.raises(ValueError):
        embed_texts(["x"], 0)
    with pytest.raises(ValueError):
        MockEmbedder(0)
