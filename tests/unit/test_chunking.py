from __future__ import annotations

import itertools
import random
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import tokens
from ingest.chunking import Chunk, chunk_document
from ingest.parsed import Block, ParsedDocument
from tests.corpus import CORPUS, needs_corpus

_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "river", "stone")


def _sentences(seed: int, count: int) -> Iterator[str]:
    """Distinct sentences: each carries its own number, so any piece of text can be located."""
    rng = random.Random(seed)
    for n in range(count):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 25)))
        yield f"Sentence s{seed}n{n} says {words}."


def _paragraphs(seed: int, count: int, sentences: int = 6, page: int | None = None, path=()) -> list[Block]:
    source = _sentences(seed, count * sentences)
    return [
        Block(" ".join(next(source) for _ in range(sentences)), page=page, heading_path=tuple(path))
        for _ in range(count)
    ]


def _doc(blocks: list[Block], pages: int | None = None) -> ParsedDocument:
    return ParsedDocument(media_type="text/plain", blocks=blocks, pages=pages)


def _exact(chunk: Chunk) -> int:
    return tokens.count_tokens([chunk.text])[0]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def _body(chunk: Chunk) -> str:
    """The chunk without its breadcrumb line."""
    if chunk.metadata["heading_path"]:
        return chunk.text.split("\n\n", 1)[1] if "\n\n" in chunk.text else ""
    return chunk.text


def _structured() -> ParsedDocument:
    blocks: list[Block] = [Block("User Guide", heading_path=("User Guide",), kind="heading", page=1)]
    blocks += _paragraphs(1, 3, page=1, path=("User Guide",))
    for k, title in enumerate(["Install", "Configure", "Run"]):
        path = ("User Guide", title)
        blocks.append(Block(title, heading_path=path, kind="heading", page=k + 1))
        blocks += _paragraphs(10 + k, 8, page=k + 1, path=path)
        sub = (*path, "Details")
        blocks.append(Block("Details", heading_path=sub, kind="heading", page=k + 2))
        blocks += _paragraphs(20 + k, 5, page=k + 2, path=sub)
    blocks.append(
        Block(
            "A table\twith | cells\n1 | 2",
            page=5,
            heading_path=("User Guide", "Run", "Details"),
            kind="table",
        )
    )
    return _doc(blocks, pages=5)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(512, 64), (128, 16), (64, 32), (1000, 0), (16, 0)])
def test_token_counts_are_exact_and_bounded(max_tokens: int, overlap: int) -> None:
    chunks = chunk_document(_structured(), max_tokens=max_tokens, overlap=overlap)
    assert chunks
    for chunk in chunks:
        assert chunk.token_count == _exact(chunk)
        assert 0 < chunk.token_count <= max_tokens
        assert chunk.text.strip() == chunk.text != ""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_chunks_are_reasonably_full() -> None:
    chunks = chunk_document(_doc(_paragraphs(3, 60)), max_tokens=512, overlap=64)
    sizes = [c.token_count for c in chunks[:-1]]
    assert min(sizes) >= 256  # a paragraph break is taken only once the chunk is half full
    assert sum(sizes) / len(sizes) >= 400


def test_no_word_is_lost() -> None:
    doc = _structured()
    chunks = chunk_document(doc, max_tokens=128, overlap=16)
    seen = set().union(*(_words(c.text) for c in chunks))
    assert _words(doc.text) <= seen


def test_no_text_is_repeated_without_overlap() -> None:
    doc = _doc(_paragraphs(4, 20))
    chunks = chunk_document(doc, max_tokens=200, overlap=0)
    numbers = re.findall(r"s4n\d+", " ".join(c.text for c in chunks))
    assert numbers == re.findall(r"s4n\d+", doc.text)  # each sentence once, in order


def test_each_chunk_starts_with_the_tail_of_the_previous_one() -> None:
    doc = _doc(_paragraphs(5, 30))
    chunks = chunk_document(doc, max_tokens=256, overlap=48)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        shared = _longest_common_edge(before.text, after.text)
        assert shared.strip(), f"chunk {after.ordinal} does not repeat the end of chunk {before.ordinal}"
        assert 12 <= tokens.count_tokens([shared])[0] <= 48 + 2


def _longest_common_edge(before: str, after: str) -> str:
    """The longest start of `after` that is also the end of `before` (modulo the whitespace joining them)."""
    for size in range(len(after), 0, -1):
        head = after[:size]
        if before.endswith((head, head.lstrip())):
            return head
    return ""


def test_overlap_prefers_whole_sentences() -> None:
    doc = _doc(_paragraphs(6, 30))
    chunks = chunk_document(doc, max_tokens=256, overlap=64)
    starts = [c.text for c in chunks[1:]]
    whole = sum(1 for text in starts if text.startswith("Sentence s6n"))
    assert whole >= len(starts) // 2


def test_overlap_does_not_cross_a_heading() -> None:
    first, second = ("Part A",), ("Part B",)
    blocks = [Block("Part A", heading_path=first, kind="heading"), *_paragraphs(40, 6, path=first)]
    blocks += [Block("Part B", heading_path=second, kind="heading"), *_paragraphs(41, 6, path=second)]
    chunks = chunk_document(_doc(blocks), max_tokens=256, overlap=64)
    opening = next(c for c in chunks if c.metadata["heading_path"] == ["Part B"])
    assert opening.text.startswith("Part B\n\nSentence s41n0 ")
    assert "s40n" not in opening.text


def test_page_metadata() -> None:
    blocks = []
    for page in range(1, 6):
        blocks += _paragraphs(30 + page, 3, page=page)
    chunks = chunk_document(_doc(blocks, pages=5), max_tokens=200, overlap=32)
    assert chunks[0].metadata["page_start"] == 1
    assert chunks[-1].metadata["page_end"] == 5
    for chunk in chunks:
        start, end = chunk.metadata["page_start"], chunk.metadata["page_end"]
        assert 1 <= start <= end <= 5
        for number in re.findall(r"s(\d+)n\d+", chunk.text):
            assert start <= int(number) - 30 <= end  # each sentence's page lies in the chunk's range
    assert any(c.metadata["page_start"] < c.metadata["page_end"] for c in chunks)  # some span a page break
    assert [c.metadata["page_start"] for c in chunks] == sorted(c.metadata["page_start"] for c in chunks)


def test_no_pages_means_none() -> None:
    chunks = chunk_document(_doc(_paragraphs(7, 10)))
    assert all(c.metadata["page_start"] is None and c.metadata["page_end"] is None for c in chunks)


def test_heading_path_is_carried_and_shown() -> None:
    chunks = chunk_document(_structured(), max_tokens=256, overlap=32)
    paths = [tuple(c.metadata["heading_path"]) for c in chunks]
    assert ("User Guide", "Install") in paths
    assert ("User Guide", "Install", "Details") in paths
    for chunk, path in zip(chunks, paths, strict=True):
        assert path
        assert chunk.text.split("\n\n", 1)[0] == " > ".join(path)
    # The heading that opens a chunk is the breadcrumb's last part, not repeated below it.
    install = next(c for c, p in zip(chunks, paths, strict=True) if p == ("User Guide", "Install"))
    assert install.text.startswith("User Guide > Install\n\nSentence s10n0 ")


def test_a_new_section_starts_a_new_chunk_when_the_current_one_is_full_enough() -> None:
    chunks = chunk_document(_structured(), max_tokens=512, overlap=64)
    starts = {c.metadata["heading_path"][-1] for c in chunks}
    assert {"Install", "Configure", "Run"} <= starts
    # Small sections are packed together rather than one tiny chunk each.
    tiny = [Block(f"Heading {k}", heading_path=(f"Heading {k}",), kind="heading") for k in range(3)]
    doc = _doc(
        [b for k in range(3) for b in (tiny[k], Block(f"Short text {k}.", heading_path=tiny[k].heading_path))]
    )
    assert len(chunk_document(doc)) == 1


def test_a_heading_never_ends_a_chunk_when_its_text_went_to_the_next() -> None:
    chunks = chunk_document(_structured(), max_tokens=128, overlap=16)
    for chunk in chunks[:-1]:
        last_line = chunk.text.rsplit("\n\n", 1)[-1]
        assert last_line not in {"Install", "Configure", "Run", "Details"}


def test_a_large_block_is_cut_between_sentences() -> None:
    big = Block(" ".join(_sentences(8, 400)))
    chunks = chunk_document(_doc([big]), max_tokens=256, overlap=32)
    assert len(chunks) > 10
    assert all(c.text.endswith(".") for c in chunks)
    assert all(c.token_count <= 256 for c in chunks)


def test_a_long_sentence_is_cut_at_words() -> None:
    sentence = " ".join(f"w{i}" for i in range(3000)) + "."
    chunks = chunk_document(_doc([Block(sentence)]), max_tokens=128, overlap=16)
    assert all(c.token_count <= 128 for c in chunks)
    for chunk in chunks:
        assert all(re.fullmatch(r"w\d+\.?", word) for word in chunk.text.split())  # no word cut in two
    assert _words(sentence) <= set().union(*(_words(c.text) for c in chunks))


def test_text_without_spaces_is_cut_by_tokens_in_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(9)
    text = "".join(
        rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(1 << 20)
    )
    encoded = _count_encoded_characters(monkeypatch)
    chunks = chunk_document(_doc([Block(text)]), max_tokens=512, overlap=64)
    assert all(0 < c.token_count <= 512 for c in chunks)
    # Each character is encoded a fixed number of times: counted, cut, its chunk checked, maybe overlapped.
    assert encoded[0] <= 4 * len(text)
    position = 0
    for chunk in chunks:  # every chunk is a piece of the text, in order, together covering all of it
        found = text.find(chunk.text, max(0, position - 1000))
        assert 0 <= found <= position
        position = found + len(chunk.text)
    assert position == len(text)


def _count_encoded_characters(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every encode through `ingest.tokens.encoding()` add its text's length to the returned counter."""
    real = tokens.encoding()
    total = [0]

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def encode_ordinary(self, text: str) -> list[int]:
            total[0] += len(text)
            return real.encode_ordinary(text)

    counting = Counting()
    monkeypatch.setattr(tokens, "encoding", lambda: counting)
    return total


def test_whitespace_and_empty_documents_make_no_chunks() -> None:
    assert chunk_document(_doc([])) == []
    assert chunk_document(_doc([Block("   \n\t "), Block("")])) == []


def test_deterministic() -> None:
    doc = _structured()
    assert chunk_document(doc, max_tokens=200, overlap=40) == chunk_document(doc, max_tokens=200, overlap=40)


def test_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError):
        chunk_document(_doc([Block("x")]), max_tokens=8)
    with pytest.raises(ValueError):
        chunk_document(_doc([Block("x")]), max_tokens=100, overlap=60)


def _corpus_documents() -> list[Path]:
    return sorted(p for p in (CORPUS / "md").glob("*.md")) + sorted((CORPUS / "txt").glob("*.txt"))


@needs_corpus
def test_real_documents_keep_every_word() -> None:
    formats = pytest.importorskip("ingest.formats")
    for path in _corpus_documents():
        doc = formats.extract(path, filename=path.name)
        chunks = chunk_document(doc)
        assert all(c.token_count == _exact(c) <= 512 for c in chunks), path.name
        missing = _words(doc.text) - set().union(*(_words(c.text) for c in chunks))
        assert not missing, f"{path.name}: {sorted(missing)[:20]}"


# --- stable boundaries across versions ----------------------------------------------------------------


def _edited(blocks: list[Block], index: int) -> list[Block]:
    """The blocks with one paragraph rewritten shorter: the plain packing shifts every boundary after it."""
    new = list(blocks)
    new[index] = Block(" ".join(_sentences(99, 1)), heading_path=blocks[index].heading_path)
    return new


def test_an_edit_changes_only_its_own_chunks_when_the_old_boundaries_are_given() -> None:
    blocks = _paragraphs(7, 60, sentences=4)
    first = chunk_document(_doc(blocks), max_tokens=256, overlap=32)
    before = {c.text for c in first}
    plain_changes = anchored_changes = 0
    for index in range(2, 58, 5):
        edited = _doc(_edited(blocks, index))
        plain = chunk_document(edited, max_tokens=256, overlap=32)
        anchored = chunk_document(edited, max_tokens=256, overlap=32, anchors={c.start_key for c in first})
        changed = {c.text for c in anchored} - before
        # The chunk holding the edit, and the next one when its overlap repeats the edited text.
        assert 1 <= len(changed) <= 2, (index, len(changed))
        assert all(c.token_count == _exact(c) <= 256 for c in anchored)
        assert not _words(edited.text) - set().union(*(_words(c.text) for c in anchored))
        plain_changes += len({c.text for c in plain} - before)
        anchored_changes += len(changed)
    assert anchored_changes * 3 < plain_changes  # without the old boundaries, edits ripple onwards


def test_anchors_change_nothing_for_the_same_text() -> None:
    doc = _structured()
    first = chunk_document(doc, max_tokens=200, overlap=40)
    assert chunk_document(doc, max_tokens=200, overlap=40, anchors={c.start_key for c in first}) == first


def test_start_keys_tell_chunks_apart() -> None:
    chunks = chunk_document(_doc(_paragraphs(8, 40)), max_tokens=200, overlap=40)
    assert len({c.start_key for c in chunks}) == len(chunks)
