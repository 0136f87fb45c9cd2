"""Collecting blocks: normalisation, the heading path and the character cap, shared by all formats."""

from __future__ import annotations

from ingest.parsed import Block, ParsedDocument

from . import normalize

# Each block is charged this many characters on top of its text: a document of a million tiny
# paragraphs costs memory and time out of proportion to its text, and the cap must bound both.
BLOCK_COST = 64


class BlockBuilder:
    """Accumulates blocks in reading order.

    A heading's own `heading_path` ends with itself, so a heading and the blocks under it share a
    path and stay together when chunked. Levels: 0 for a document title, 1..9 for headings.
    Once `max_chars` (text plus BLOCK_COST per block) are spent the last block is cut, `full`
    becomes true and further blocks are ignored; extractors check `full` to stop reading early.
    """

    def __init__(self, max_chars: int) -> None:
        self.blocks: list[Block] = []
        self.warnings: list[str] = []
        self.full = False
        self._room = max_chars
        self._max_chars = max_chars
        self._path: list[tuple[int, str]] = []
        self._path_texts: tuple[str, ...] = ()

    def add(self, text: str, kind: str = "paragraph", page: int | None = None) -> None:
        if self.full:
            return
        text, cut = self._bounded(text)
        text = normalize.code(text) if kind == "code" else normalize.prose(text)
        self._append(text, kind, page, cut)

    def heading(self, text: str, level: int, page: int | None = None) -> None:
        if self.full:
            return
        text, cut = self._bounded(text)
        text = normalize.prose(text).replace("\n", " ")
        if text:
            while self._path and self._path[-1][0] >= level:
                self._path.pop()
            self._path.append((level, text))
            self._path_texts = tuple(h for _, h in self._path)
        self._append(text, "heading", page, cut)

    def _bounded(self, text: str) -> tuple[str, bool]:
        # Never normalise much more than can still be kept (a 100 MB paragraph, say).
        limit = 2 * self._room
        return (text[:limit], True) if len(text) > limit else (text, False)

    def _append(self, text: str, kind: str, page: int | None, cut: bool = False) -> None:
        if self.full or not (text or cut):
            return
        if cut or len(text) + BLOCK_COST > self._room:
            text = text[: max(self._room - BLOCK_COST, 0)].rstrip()
            self.full = True
            self.warnings.append(
                f"text cut at the limit of {self._max_chars} characters ({BLOCK_COST} more per block)"
            )
        self._room -= len(text) + BLOCK_COST
        if text:
            self.blocks.append(Block(text, page, self._path_texts, kind))

    def document(self, media_type: str, pages: int | None = None, partial: bool = False) -> ParsedDocument:
        return ParsedDocument(
            media_type=media_type,
            blocks=self.blocks,
            pages=pages,
            partial=partial or self.full,
            warnings=self.warnings,
        )
