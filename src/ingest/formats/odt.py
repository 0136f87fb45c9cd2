"""ODT (OpenDocument text): the text of content.xml in reading order.

Supported because it costs little and is as safe as DOCX: the same ZIP checks (safezip) and the
same hardened streaming parser (xmlparts). Headings come from `text:h` and its outline level;
paragraphs inside list items are list items; tables become one block like DOCX tables.
Not read: footnotes/endnotes, annotations, tracked deletions, styles.xml (headers, footers).
"""

from __future__ import annotations

from lxml import etree

from ingest.parsed import ParsedDocument

from . import safezip, xmlparts
from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import ODT
from .source import Source

LABEL = "OpenDocument text"
CONTENT = "content.xml"

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
P, H = f"{_TEXT}p", f"{_TEXT}h"
TABLE, ROW, CELL = f"{_TABLE}table", f"{_TABLE}table-row", f"{_TABLE}table-cell"
_SPACE, _TAB, _LINE_BREAK = f"{_TEXT}s", f"{_TEXT}tab", f"{_TEXT}line-break"
_LIST_ITEM, _TRACKED = f"{_TEXT}list-item", f"{_TEXT}tracked-changes"
_SKIPPED = {f"{_TEXT}note", f"{_OFFICE}annotation", f"{_TEXT}tracked-changes"}
_MAX_SPACES = 100  # text:s c="1000000000" must not allocate a gigabyte


def check(source: Source, limits: Limits) -> None:
    with safezip.open_zip(source, LABEL) as archive:
        safezip.validate(archive, (CONTENT,), limits.max_unzipped_bytes, LABEL)


def extract(source: Source, limits: Limits) -> ParsedDocument:
    builder = BlockBuilder(limits.max_chars)
    with safezip.open_zip(source, LABEL) as archive:
        safezip.validate(archive, (CONTENT,), limits.max_unzipped_bytes, LABEL)
        for element in xmlparts.iter_part(archive, CONTENT, limits.max_unzipped_bytes, (P, H, TABLE), LABEL):
            # Paragraphs in tables, frames and notes are read with (or skipped by) their container.
            if xmlparts.has_ancestor(element, P, H, TABLE, _TRACKED):
                continue
            if element.tag == TABLE:
                builder.add(_table_text(element), kind="table")
            elif element.tag == H:
                builder.heading(_inline_text(element), _level(element.get(f"{_TEXT}outline-level")))
            else:
                kind = "list" if xmlparts.has_ancestor(element, _LIST_ITEM) else "paragraph"
                builder.add(_inline_text(element), kind=kind)
            xmlparts.release(element)
            if builder.full:
                break
    return builder.document(ODT)


def _level(value: str | None) -> int:
    # Writers emit outline-level="0" too; clamp into 1..10.
    return min(max(int(value), 1), 10) if value and value.isdigit() else 1


def _inline_text(element: etree._Element) -> str:
    parts: list[str] = []
    _walk(element, parts)
    return "".join(parts)


def _walk(node: etree._Element, parts: list[str]) -> None:
    # Recursion is bounded: libxml2 refuses documents nested deeper than 256 levels (no huge_tree).
    if node.text:
        parts.append(node.text)
    for child in node:
        tag = child.tag
        if tag == _SPACE:
            count = child.get(f"{_TEXT}c", "1")
            parts.append(" " * min(int(count) if count.isdigit() else 1, _MAX_SPACES))
        elif tag == _TAB:
            parts.append("\t")
        elif tag == _LINE_BREAK:
            parts.append("\n")
        elif tag not in _SKIPPED:
            if tag in (P, H):  # a paragraph in a frame or text box inside this one
                parts.append("\n")
            _walk(child, parts)
        if child.tail:
            parts.append(child.tail)


def _table_text(table: etree._Element) -> str:
    rows: list[str] = []
    for row in table.iter(ROW):
        if xmlparts.nearest(row, TABLE) is not table:
            continue  # a row of a nested table: read as part of its cell
        cells = [
            _inline_text(cell).replace("\n", " ").strip()
            for cell in row.iter(CELL)
            if xmlparts.nearest(cell, ROW) is row
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)
