from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest import tokens

SRC = Path(__file__).resolve().parents[2] / "src"

# Known cl100k_base ids (OpenAI cookbook, "How to count tokens with tiktoken").
HELLO_WORLD = [15339, 1917]
TIKTOKEN_IS_GREAT = [83, 1609, 5963, 374, 2294, 0]

_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket

    def refuse(*args, **kwargs):
        raise OSError("network is disabled in this test")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from ingest.tokens import count_tokens, encoding

    enc = encoding()
    print(json.dumps({
        "name": enc.name,
        "hello": enc.encode_ordinary("hello world"),
        "great": enc.encode_ordinary("tiktoken is great!"),
        "counts": count_tokens(["hello world", "tiktoken is great!", ""]),
    }))
    """
)


def test_encoding_loads_without_network(tmp_path: Path) -> None:
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC), "TIKTOKEN_CACHE_DIR": str(cache)}
    env.pop("DATA_GYM_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {
        "name": "cl100k_base",
        "hello": HELLO_WORLD,
        "great": TIKTOKEN_IS_GREAT,
        "counts": [2, 6, 0],
    }


def test_encoding_is_built_once() -> None:
    assert tokens.encoding() is tokens.encoding()


def test_count_tokens_known_strings() -> None:
    assert tokens.count_tokens(["hello world", "tiktoken is great!", ""]) == [2, 6, 0]
    # Special-token text is ordinary text here, as the embeddings API counts it.
    assert tokens.count_tokens(["<|endoftext|>"]) == [len(tokens.encoding().encode_ordinary("<|endoftext|>"))]


def test_count_tokens_in_threads_matches_one_by_one() -> None:
    texts = [f"Sentence number {i} of a long batch, with ünïcödé and 😀." * (1 + i % 7) for i in range(6000)]
    assert sum(map(len, texts)) > 256 * 1024  # large enough to be counted in threads
    enc = tokens.encoding()
    assert tokens.count_tokens(texts) == [len(enc.encode_ordinary(t)) for t in texts]


TEXT = "Der Bär läuft schnell. 😀😀 Emoji and CJK 漢字テキスト follow; then plain words to the end.\n" * 20


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_split_is_lossless_and_bounded(size: int) -> None:
    parts = tokens.split(TEXT, size)
    assert "".join(text for text, _ in parts) == TEXT
    # One character takes up to 4 tokens: below that a part holds at least one whole character.
    assert all(1 <= n <= max(size, 4) for _, n in parts)
    assert all("\ufffd" not in text for text, _ in parts)  # never cuts inside a character
    assert sum(n for _, n in parts) == tokens.count_tokens([TEXT])[0]


def test_split_prefers_word_starts() -> None:
    text = " ".join(f"word{i}" for i in range(500))
    parts = [text for text, _ in tokens.split(text, 40)]
    assert all(part.startswith(" ") for part in parts[1:])


def test_truncate_and_tail() -> None:
    sentence = "The quick brown fox jumps over the lazy dog."
    assert tokens.truncate(sentence, 100) == sentence
    assert tokens.tail(sentence, 100) == sentence
    head = tokens.truncate(sentence, 4)
    end = tokens.tail(sentence, 4)
    assert head == "The quick brown fox"
    assert end == " the lazy dog."
    for size in (1, 2, 5, 30):
        head, end = tokens.truncate(TEXT, size), tokens.tail(TEXT, size)
        assert TEXT.startswith(head) and TEXT.endswith(end)
        assert tokens.count_tokens([head])[0] <= size
        assert tokens.count_tokens([end])[0] <= size
        assert "\ufffd" not in head + end


def test_tail_of_a_long_text_reads_only_its_end() -> None:
    text = "x" * 1_000_000 + " and the final words."
    assert tokens.tail(text, 5) == " and the final words."
