"""LlamaParse markdown pages <-> our blocks. Pure functions.

Reading: each page's markdown is read by the project's own markdown reader (`ingest.formats.markdown`),
so LlamaParse output and an uploaded .md file become blocks by the same rules: `#` headings set the
heading path, fenced code is one block, each list item is a block, a pipe table is one block. The path
carries over page breaks (a section continues on the next page); every block gets its 1-based `page`.

Writing (the stand-in's side): blocks become the markdown LlamaParse would return, laid out so that
reading it back gives the same kinds and headings. A heading's level is its depth in the heading path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ingest.errors import EmptyDocument
from ingest.formats.blocks import BlockBuilder
from ingest.formats.markdown import MarkdownReader  # one markdown dialect for the whole project
from ingest.parsed import Block, ParsedDocument
from router.vendor_errors import MalformedResponse


@dataclass(frozen=True, slots=True)
class PageText:
    page: int  # 1-based
    text: str  # markdown, or plain text for the fast tier


def markdown_to_blocks(pages: Iterable[PageText], *, max_chars: int) -> tuple[list[Block], list[str]]:
    """The blocks of the pages in order, and the warnings of reading them (text cut at `max_chars`)."""
    builder = BlockBuilder(max_chars)
    for page in pages:
        start = len(builder.blocks)
        # A fresh reader per page: a page break ends any paragraph, list or fence left open.
        MarkdownReader(builder).read(page.text.replace("\r\n", "\n").split("\n"))
        builder.blocks[start:] = [replace(block, page=page.page) for block in builder.blocks[start:]]
        if builder.full:
            break
    return builder.blocks, builder.warnings


def text_to_blocks(pages: Iterable[PageText], *, max_chars: int) -> tuple[list[Block], list[str]]:
    """Plain-text pages (the `fast` tier has no markdown): one paragraph per run of non-blank lines."""
    builder = BlockBuilder(max_chars)
    for page in pages:
        for paragraph in re.split(r"\n[ \t]*\n", page.text.replace("\r\n", "\n")):
            builder.add(paragraph, page=page.page)
        if builder.full:
            break
    return builder.blocks, builder.warnings


# What would make a line of prose read as something else: a heading, list item, fence, quote or table
# row. Such a line gets a backslash, as markdown writers escape it.
_SPECIAL_START = re.compile(r"#|[-*+](?:\s|$)|\d{1,9}[.)](?:\s|$)|```|~~~|>|\|")
_LIST_MARK = re.compile(r"(?:[-*+]|\d{1,9}[.)])(?:\s|$)")
_RULE_CHARS = frozenset("-*_= ")


def _prose(text: str) -> str:
    # One line per paragraph: a line break inside extracted prose is layout, not structure, and a
    # lone line cannot turn into a setext heading or a table.
    line = " ".join(text.split())
    if _SPECIAL_START.match(line) or (line and set(line) <= _RULE_CHARS):  # the latter: a rule
        return "\\" + line
    return line


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    bar = "`" * (longest + 1)
    return f"{bar}\n{text}\n{bar}"


def _table(text: str) -> str:
    rows = [[cell.strip().replace("|", "\\|") for cell in row.split(" | ")] for row in text.split("\n")]
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


def block_markdown(block: Block) -> str:
    if block.kind == "heading":
        level = min(max(len(block.heading_path), 1), 6)
        return "#" * level + " " + " ".join(block.text.split())
    if block.kind == "code":
        return _fence(block.text)
    if block.kind == "table":
        return _table(block.text)
    if block.kind == "list":
        item = " ".join(block.text.split())
        return item if _LIST_MARK.match(item) else "- " + item
    return _prose(block.text)


def blocks_to_markdown(blocks: Sequence[Block]) -> str:
    return "\n\n".join(block_markdown(block) for block in blocks)


def paginate(blocks: Sequence[Block], *, chars_per_page: int) -> list[list[Block]]:
    """The blocks in pages of about `chars_per_page` characters of markdown, split between blocks."""
    pages: list[list[Block]] = [[]]
    size = 0
    for block in blocks:
        length = len(block_markdown(block)) + 2  # and the blank line that separates blocks
        if pages[-1] and size + length > chars_per_page:
            pages.append([])
            size = 0
        pages[-1].append(block)
        size += length
    return pages


def pages_to_document(pages: list[object], media_type: str, plain: bool, max_chars: int) -> ParsedDocument:
    """A parse result's pages (SDK objects: `markdown`, or `text` for the fast tier) as our document."""
    texts: list[PageText] = []
    warnings: list[str] = []
    for index, page in enumerate(pages, start=1):
        number = getattr(page, "page_number", None) or index
        if getattr(page, "success", True) is False:
            warnings.append(f"LlamaParse could not parse page {number}: {getattr(page, 'error', '')}")
            continue
        text = getattr(page, "text" if plain else "markdown", None)
        if not isinstance(text, str):
            raise MalformedResponse(f"LlamaParse page {number} has no content")
        texts.append(PageText(number, text))
    blocks, cut = (text_to_blocks if plain else markdown_to_blocks)(texts, max_chars=max_chars)
    if not blocks:
        raise EmptyDocument("LlamaParse found no text in the document")
    return ParsedDocument(
        media_type, blocks, pages=len(pages), partial=bool(warnings or cut), warnings=warnings + cut
    )
