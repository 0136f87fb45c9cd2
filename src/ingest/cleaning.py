"""Layout noise that must not reach the index: what a parser reads off a page that is not the document's text.

- Dot leaders: a table of contents ("2.1 What is R? . . . . . 3") matches every question about any of
  its titles and answers none. A block mostly made of leader dots is dropped; leader runs left inside
  a block are removed.
- Page numbers: in a paged document, a block that is only a page number ("12", "iv", "Page 3 of 9").
- Running headers and footers: in a paged document, a short block that opens or closes at least half
  of the pages (compared without digits and trailing roman numerals, so "Guide ii" and "Guide 14" are
  one line) is dropped wherever it opens or closes a page.

The document's stored file keeps all of it; only the chunks, and so the index, go without.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace

from ingest.parsed import Block, ParsedDocument

# Four or more leader dots, spaced or not, and the page number that may follow them.
_LEADER = re.compile(r"(?:[ \t]?[.·…]){4,}[ \t]*(?:\d{1,4}\b)?")
_PAGE_NUMBER = re.compile(r"(?i)\s*(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?\s*")
_EDGE_MAX_CHARS = 120
_MIN_PAGES = 4
_DIGITS = re.compile(r"\d+")
_TRAILING_ROMAN = re.compile(r"(?i)(?:\s+[ivxlcdm]{1,7})+\s*$|^\s*(?:[ivxlcdm]{1,7}\s+)+")
_LEADER_SHARE = 0.15
_SPACES = re.compile(r"[ \t]{2,}")


def clean(doc: ParsedDocument) -> ParsedDocument:
    """The document without dot leaders, page numbers and running headers or footers."""
    running = _running_lines(doc.blocks) if (doc.pages or 0) >= _MIN_PAGES else set()
    edges = _page_edges(doc.blocks)
    blocks: list[Block] = []
    for index, block in enumerate(doc.blocks):
        if block.page is not None and _PAGE_NUMBER.fullmatch(block.text):
            continue
        if index in edges and _key(block.text) in running:
            continue
        text = _without_leaders(block.text)
        if text is None:
            continue
        blocks.append(block if text == block.text else replace(block, text=text))
    if blocks == doc.blocks:
        return doc
    return ParsedDocument(doc.media_type, blocks, doc.pages, doc.partial, list(doc.warnings))


def _without_leaders(text: str) -> str | None:
    """The text without leader runs; None when they were a large part of it (a table of contents)."""
    runs = _LEADER.findall(text)
    if not runs:
        return text
    visible = sum(not c.isspace() for c in text)
    leaders = sum(run.count(".") + run.count("·") + run.count("…") for run in runs)
    if leaders >= _LEADER_SHARE * visible:
        return None
    return _SPACES.sub(" ", _LEADER.sub(" ", text)).strip() or None


def _key(text: str) -> str:
    return " ".join(_TRAILING_ROMAN.sub("", _DIGITS.sub("#", text)).casefold().split())


def _page_edges(blocks: list[Block]) -> set[int]:
    """Indexes of short blocks that open or close their page."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for index, block in enumerate(blocks):
        if block.page is None:
            continue
        first.setdefault(block.page, index)
        last[block.page] = index
    return {i for i in (*first.values(), *last.values()) if len(blocks[i].text) <= _EDGE_MAX_CHARS}


def _running_lines(blocks: list[Block]) -> set[str]:
    pages: dict[str, set[int]] = defaultdict(set)
    with_text = {b.page for b in blocks if b.page is not None}
    for index in _page_edges(blocks):
        key = _key(blocks[index].text)
        if key:
            pages[key].add(blocks[index].page or 0)
    return {key for key, seen in pages.items() if len(seen) >= max(3, len(with_text) / 2)}
