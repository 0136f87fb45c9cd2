"""Cutting a parsed document into overlapping, token-bounded chunks that follow its structure.

How a chunk is made:
- Layout noise goes first (ingest/cleaning.py): dot leaders, page numbers, running headers and footers.
- Blocks are cut into pieces once: sentences; a sentence too large for a chunk is cut at line
  breaks, then at token boundaries (near a word start when one is close). All sentences are counted
  in one batch, and only the too-large ones are encoded again to be cut; packing then works on token
  counts alone, so the cost is linear in the text even for a 5 MiB line without spaces.
- Pieces are packed greedily up to `max_tokens`. Before a heading, a new chunk starts when the current
  one is a quarter full (top-level heading) or half full (deeper heading); before a paragraph that no
  longer fits, when it is half full; otherwise the paragraph is cut between sentences. A heading is
  never the last thing of a chunk when what follows it went to the next one.
- A chunk whose section has headings starts with its breadcrumb line ("Guide > Install"), counted in
  its tokens and capped at an eighth of them; a heading block that opens the chunk is then not
  repeated below the line.
- Each chunk continues the previous one's text with about `overlap` tokens of its tail: whole sentences,
  topped up with the end of the sentence before them (from a word start). Overlap never crosses a
  heading: a chunk that opens a new section starts clean, as the previous section's tail would be filed
  under the wrong heading.
- `token_count` is the exact cl100k_base count of `text` and never exceeds `max_tokens`: each finished
  chunk is encoded once and, in the rare case that joining pieces costs more than their counts,
  re-packed one piece shorter.
- Boundaries are stable across versions of a document. Each chunk records where it starts
  (`start_key`: a hash of its first piece and the piece before). Given the previous version's keys
  (`anchors`), a chunk also ends before any piece where a previous chunk started, so after an edited
  paragraph the packing falls back onto the old boundaries at once and every chunk the edit did not
  touch comes out identical (its embedding is reused). Without anchors the packing is the plain one.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from ingest import tokens
from ingest.cleaning import clean
from ingest.parsed import Block, ParsedDocument

# Tokens kept free in every piece's budget for joins and the drift of counts at piece edges.
_SLACK = 4
# Pieces are cut to at most this many characters before encoding, which bounds the memory of one
# encode call (a token list costs about 36 bytes per token) whatever the input.
_MAX_PIECE_CHARS = 64 * 1024

# Shorter sentences or lines stay with the next one: a cut there would strand an enumerator or a word.
_MIN_PART_CHARS = 16
# A sentence ends at . ! ? … (and any closing quotes or brackets) before whitespace, or at a CJK full stop.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'’”»)\]]*(?=\s)|[。！？]+[」』”)）]*")
# A line ends at its last visible character.
_LINE_END = re.compile(r"(?<=\S)(?=[^\S\n]*\n)")


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    text: str
    token_count: int
    metadata: dict  # page_start, page_end (None without pages), heading_path (list[str])
    start_key: bytes = b""  # where the chunk starts: the anchor a later version ends its chunks at


@dataclass(frozen=True, slots=True)
class _Piece:
    """A run of one block's text. Pieces of a block join back to it: later ones carry their leading space."""

    text: str
    tokens: int  # counted alone (exact for sentences, within the block's tokenization for cut pieces)
    block: int
    page: int | None
    path: tuple[str, ...]  # the section it belongs to; a heading's ends with the heading itself
    heading: bool
    block_start: bool
    rest: int = 0  # tokens from this piece to the end of its block


@dataclass(frozen=True, slots=True)
class _Header:
    text: str
    tokens: int
    complete: bool  # not cut to fit


def chunk_document(
    doc: ParsedDocument, *, max_tokens: int = 512, overlap: int = 64, anchors: Collection[bytes] = ()
) -> list[Chunk]:
    """`anchors`: the `start_key`s of the previous version's chunks, whose boundaries are kept."""
    if max_tokens < 16:
        raise ValueError("max_tokens must be at least 16")
    if not 0 <= overlap <= max_tokens // 2:
        raise ValueError("overlap must be between 0 and half of max_tokens")
    doc = clean(doc)  # layout noise (dot leaders, page numbers, running lines) stays out of the index
    headers = _headers(doc.blocks, max_tokens)
    pieces = _pieces(doc.blocks, headers, max_tokens, overlap)
    top_depth = _top_heading_depth(doc.blocks)
    enc = tokens.encoding()

    chunks: list[Chunk] = []
    previous: list[_Piece] = []
    i = 0
    while i < len(pieces):
        header = headers[pieces[i].path]
        carried = _overlap(previous, pieces[i], overlap) if chunks else []
        end = _pack(pieces, i, carried, header, max_tokens, top_depth, anchors)
        while True:
            parts = carried + pieces[i + int(_drops_heading(pieces, i, header)) : end]
            text = _render(header.text, parts)
            count = len(enc.encode_ordinary(text))
            if count <= max_tokens:
                break
            if end - i > 1:
                end = _without_trailing_headings(pieces, i, end - 1)
            elif carried:
                carried = []
            else:  # one piece alone too large (its count drifted when cut): halve it in place
                pieces[i : i + 1] = _split_piece(pieces[i])
                end = i + 1
        # Never empty: every piece has visible text, and a dropped heading is in the breadcrumb.
        pages = [p.page for p in carried + pieces[i:end] if p.page is not None]
        chunks.append(
            Chunk(
                ordinal=len(chunks),
                text=text,
                token_count=count,
                metadata={
                    "page_start": min(pages) if pages else None,
                    "page_end": max(pages) if pages else None,
                    "heading_path": list(pieces[i].path),
                },
                start_key=_start_key(pieces, i),
            )
        )
        previous = parts
        i = end
    return chunks


# --- cutting blocks into pieces -----------------------------------------------------------------------


def _section_path(block: Block) -> tuple[str, ...]:
    """The block's section; a heading opens its own (whether or not the parser put it in its path)."""
    if block.kind != "heading":
        return block.heading_path
    title = block.text.strip()
    path = block.heading_path
    return path if path and path[-1].strip() == title else (*path, title)


def _headers(blocks: Sequence[Block], max_tokens: int) -> dict[tuple[str, ...], _Header]:
    paths = list(dict.fromkeys(_section_path(b) for b in blocks))
    full = [" > ".join(" ".join(h.split()) for h in path) for path in paths]
    texts = [tokens.truncate(f, max_tokens // 8) for f in full]
    counts = tokens.count_tokens(texts)
    return {
        path: _Header(text=text.strip(), tokens=count + 1 if text.strip() else 0, complete=text == f)
        for path, f, text, count in zip(paths, full, texts, counts, strict=True)
    }


def _cut_at(pattern: re.Pattern[str], text: str) -> list[str]:
    """Split after matches of `pattern`; whitespace between parts goes to the part after.

    A part shorter than _MIN_PART_CHARS is not cut off ("1. Install", "e.g. this", "Yes. No.").
    """
    bounds = [0]
    for match in pattern.finditer(text):
        if match.end() - bounds[-1] >= _MIN_PART_CHARS and match.end() < len(text):
            bounds.append(match.end())
    bounds.append(len(text))
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _bounded(texts: Iterable[str]) -> list[str]:
    """Texts cut to at most _MAX_PIECE_CHARS characters, before whitespace where there is some."""
    out: list[str] = []
    for text in texts:
        while len(text) > _MAX_PIECE_CHARS:
            window = text[: _MAX_PIECE_CHARS + 1]
            cut = max(window.rfind("\n"), window.rfind(" "))
            if cut < _MAX_PIECE_CHARS // 2:
                cut = _MAX_PIECE_CHARS
            out.append(text[:cut])
            text = text[cut:]
        out.append(text)
    return out


def _fit(parts: list[tuple[str, int]], cap: int) -> list[tuple[str, int]]:
    """The (text, tokens) parts, those over `cap` tokens cut at line breaks, then at tokens."""
    out: list[tuple[str, int]] = []
    for text, count in parts:
        if count <= cap:
            out.append((text, count))
            continue
        lines = _cut_at(_LINE_END, text) if "\n" in text else [text]
        if len(lines) > 1:
            out.extend(_fit(list(zip(lines, tokens.count_tokens(lines), strict=True)), cap))
        else:
            out.extend(tokens.split(text, cap))
    return out


def _pieces(
    blocks: Sequence[Block], headers: dict[tuple[str, ...], _Header], max_tokens: int, overlap: int
) -> list[_Piece]:
    # Sentences of every block, counted in one batch.
    sentences: list[str] = []
    owners: list[int] = []
    for index, block in enumerate(blocks):
        text = block.text.strip()
        # A heading is kept whole unless too large: "1. Introduction" is not two sentences.
        for sentence in _bounded([text] if block.kind == "heading" else _cut_at(_SENTENCE_END, text)):
            sentences.append(sentence)
            owners.append(index)
    counts = tokens.count_tokens(sentences)

    pieces: list[_Piece] = []
    for sentence, count, index in zip(sentences, counts, owners, strict=True):
        block = blocks[index]
        path = _section_path(block)
        # Room for one piece beside the breadcrumb and the overlap, so every chunk can make progress.
        cap = max_tokens - headers[path].tokens - overlap - _SLACK
        for text, n in _fit([(sentence, count)], cap):
            if not text.strip():
                continue
            first = not pieces or pieces[-1].block != index
            pieces.append(_Piece(text, n, index, block.page, path, block.kind == "heading", first))
    return _with_rest(pieces)


def _with_rest(pieces: list[_Piece]) -> list[_Piece]:
    out = list(pieces)
    rest = 0
    for k in range(len(out) - 1, -1, -1):
        rest = out[k].tokens + (rest if k + 1 < len(out) and out[k + 1].block == out[k].block else 0)
        out[k] = replace(out[k], rest=rest)
    return out


def _split_piece(piece: _Piece) -> list[_Piece]:
    size = max(1, tokens.count_tokens([piece.text])[0] // 2)
    parts = tokens.split(piece.text, size)
    return [
        replace(piece, text=text, tokens=n, block_start=piece.block_start and k == 0)
        for k, (text, n) in enumerate(parts)
    ]


def _top_heading_depth(blocks: Sequence[Block]) -> int:
    """The shallowest heading depth used more than once (a lone document title is not a section)."""
    depths = Counter(len(_section_path(b)) for b in blocks if b.kind == "heading")
    repeated = [d for d, n in depths.items() if n > 1]
    return min(repeated or depths or [1])


# --- packing ------------------------------------------------------------------------------------------


def _drops_heading(pieces: list[_Piece], i: int, header: _Header) -> bool:
    """Whether the chunk's first piece is a whole heading already shown in full by its breadcrumb."""
    first = pieces[i]
    whole = i + 1 == len(pieces) or pieces[i + 1].block != first.block
    return first.heading and first.block_start and whole and header.complete


def _join_cost(before: _Piece | None, piece: _Piece) -> int:
    return piece.tokens + (1 if before is not None and before.block != piece.block else 0)


def _start_key(pieces: list[_Piece], i: int) -> bytes:
    """Where a chunk starting at piece i starts: its first piece and the one before, whitespace-blind."""
    before = " ".join(pieces[i - 1].text.split()) if i else ""
    text = f"{before}\x00{' '.join(pieces[i].text.split())}"
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def _pack(
    pieces: list[_Piece],
    i: int,
    carried: list[_Piece],
    header: _Header,
    max_tokens: int,
    top_depth: int,
    anchors: Collection[bytes] = (),
) -> int:
    """End (exclusive) of the chunk that starts with piece i after the carried overlap; it ends early
    before a piece where a chunk of the previous version started (an anchor)."""
    used = header.tokens
    before: _Piece | None = None
    for piece in carried:
        used += _join_cost(before, piece)
        before = piece
    end = i
    if _drops_heading(pieces, i, header):  # shown by the breadcrumb, so it costs nothing more
        end = i + 1
    while end < len(pieces):
        piece = pieces[end]
        cost = _join_cost(before, piece)
        if end > i:
            if anchors and _start_key(pieces, end) in anchors:
                break
            if piece.heading and piece.block_start:
                shallow = len(piece.path) <= top_depth
                if used >= (max_tokens // 4 if shallow else max_tokens // 2):
                    break
            elif (
                piece.block_start
                and used + cost - piece.tokens + piece.rest > max_tokens
                and used >= max_tokens // 2
            ):
                break  # the paragraph would not fit whole, and this chunk is full enough to end here
            if used + cost > max_tokens:
                break
        used += cost
        before = piece
        end += 1
    return _without_trailing_headings(pieces, i, end)


def _without_trailing_headings(pieces: list[_Piece], i: int, end: int) -> int:
    """Move headings that would close a chunk to the next one, unless the chunk holds nothing else."""
    if end == len(pieces):
        return end
    cut = end
    while cut - 1 > i and pieces[cut - 1].heading:
        cut -= 1
    return end if pieces[cut - 1].heading else cut


def _overlap(previous: list[_Piece], first: _Piece, overlap: int) -> list[_Piece]:
    """The tail of the previous chunk that the next one, starting at `first`, repeats."""
    if overlap == 0 or first.heading:
        return []
    taken: list[_Piece] = []
    total = 0
    for k in range(len(previous) - 1, -1, -1):
        piece = previous[k]
        if piece.heading or piece.path != first.path:
            break
        cost = piece.tokens + (1 if taken and taken[-1].block != piece.block else 0)
        if total + cost > overlap:
            need = overlap - total
            if need >= overlap // 4:
                end = tokens.tail(piece.text, need)
                if end.strip():
                    taken.append(replace(piece, text=end, tokens=need, block_start=False))
            break
        taken.append(piece)
        total += cost
    return taken[::-1]


def _render(header: str, parts: Sequence[_Piece]) -> str:
    out: list[str] = []
    before: _Piece | None = None
    for piece in parts:
        if before is None:
            out.append(piece.text.lstrip())
        elif before.block == piece.block:
            out.append(piece.text)
        else:
            out.append("\n\n" + piece.text.lstrip())
        before = piece
    body = "".join(out).strip()
    if not body or not header:
        return body or header
    return f"{header}\n\n{body}"
