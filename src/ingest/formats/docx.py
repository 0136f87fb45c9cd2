"""DOCX: text of word/document.xml in reading order, without python-docx.

python-docx trusts the archive; we validate the ZIP directory first (safezip) and stream the
XML through a hardened parser (xmlparts). Headings come from paragraph styles (resolved through
word/styles.xml, so localised style ids such as "Titre1" work) or outline levels; numbered and
list-styled paragraphs are list items; tables become one block, cells joined with " | " and rows
by newlines. Not read: headers, footers, footnotes, comments, deleted (tracked) text, field codes.
"""

from __future__ import annotations

import re
import zipfile

from lxml import etree

from ingest.parsed import ParsedDocument

from . import safezip, xmlparts
from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import DOCX
from .source import Source

LABEL = "Word document"
DOCUMENT = "word/document.xml"
STYLES = "word/styles.xml"

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
P, TBL, TR, TC, T = f"{_W}p", f"{_W}tbl", f"{_W}tr", f"{_W}tc", f"{_W}t"
_TAB, _BR, _CR, _NB_HYPHEN = f"{_W}tab", f"{_W}br", f"{_W}cr", f"{_W}noBreakHyphen"
_VAL = f"{_W}val"
_HEADING_NAME = re.compile(r"heading\s*([1-9])$", re.IGNORECASE)


def check(source: Source, limits: Limits) -> None:
    with safezip.open_zip(source, LABEL) as archive:
        safezip.validate(archive, (DOCUMENT, STYLES), limits.max_unzipped_bytes, LABEL)


def extract(source: Source, limits: Limits) -> ParsedDocument:
    builder = BlockBuilder(limits.max_chars)
    with safezip.open_zip(source, LABEL) as archive:
        safezip.validate(archive, (DOCUMENT, STYLES), limits.max_unzipped_bytes, LABEL)
        styles = _styles(archive, limits) if STYLES in archive.namelist() else {}
        for element in xmlparts.iter_part(archive, DOCUMENT, limits.max_unzipped_bytes, (P, TBL), LABEL):
            # Paragraphs inside tables (or text boxes) are read with their container.
            if xmlparts.has_ancestor(element, P, TBL):
                continue
            if element.tag == TBL:
                builder.add(_table_text(element), kind="table")
            else:
                _paragraph(element, styles, builder)
            xmlparts.release(element)
            if builder.full:
                break
    return builder.document(DOCX)


def _styles(archive: zipfile.ZipFile, limits: Limits) -> dict[str, tuple[int | None, bool]]:
    """Paragraph style id -> (heading level or None, is a list style), following `basedOn` links."""
    own: dict[str, tuple[int | None, bool, str | None]] = {}
    style_tag = f"{_W}style"
    for style in xmlparts.iter_part(archive, STYLES, limits.max_unzipped_bytes, (style_tag,), LABEL):
        style_id = style.get(f"{_W}styleId")
        if style.get(f"{_W}type") == "paragraph" and style_id:
            name = (_child_val(style, "name") or "").strip()
            level = _name_level(name)
            outline = style.find(f"{_W}pPr/{_W}outlineLvl")
            if level is None and outline is not None:
                level = _outline_level(outline.get(_VAL))
            own[style_id] = (
                level,
                name.lower().startswith("list"),
                _child_val(style, "basedOn"),
            )
    resolved: dict[str, tuple[int | None, bool]] = {}
    for style_id, (level, is_list, based_on) in own.items():
        seen = {style_id}
        while level is None and based_on in own and based_on not in seen:  # cycles are possible
            seen.add(based_on)
            level, _, based_on = own[based_on]
        resolved[style_id] = (level, is_list)
    return resolved


def _child_val(element: etree._Element, name: str) -> str | None:
    child = element.find(f"{_W}{name}")
    return None if child is None else child.get(_VAL)


def _name_level(name: str) -> int | None:
    if name.lower() == "title":
        return 0
    match = _HEADING_NAME.match(name)
    return int(match.group(1)) if match else None


def _outline_level(value: str | None) -> int | None:
    # w:outlineLvl is 0-based; 9 means body text.
    return int(value) + 1 if value is not None and value.isdigit() and int(value) < 9 else None


def _paragraph(p: etree._Element, styles: dict[str, tuple[int | None, bool]], builder: BlockBuilder) -> None:
    props = p.find(f"{_W}pPr")
    level, is_list = None, False
    if props is not None:
        style = _child_val(props, "pStyle")
        level, is_list = styles.get(style or "", (None, False))
        outline = props.find(f"{_W}outlineLvl")
        if outline is not None:
            level = _outline_level(outline.get(_VAL))
        is_list = is_list or props.find(f"{_W}numPr") is not None
    text = _paragraph_text(p)
    if level is not None:
        builder.heading(text, level)
    else:
        builder.add(text, kind="list" if is_list else "paragraph")


def _paragraph_text(p: etree._Element) -> str:
    # mc:Fallback repeats mc:Choice (e.g. a text box drawn twice, DrawingML and VML): read one.
    for fallback in list(p.iter(_MC_FALLBACK)):
        parent = fallback.getparent()
        if parent is not None:  # found under `p`, so it has one
            parent.remove(fallback)
    parts: list[str] = []
    for node in p.iter(T, _TAB, _BR, _CR, _NB_HYPHEN, P):
        tag = node.tag
        if tag == T:
            parts.append(node.text or "")
        elif tag == _TAB:
            parts.append("\t")
        elif tag == _NB_HYPHEN:
            parts.append("-")
        elif node is not p:  # a break, or a paragraph of a text box inside this one
            parts.append("\n")
    return "".join(parts)


def _table_text(tbl: etree._Element) -> str:
    rows: list[str] = []
    for tr in tbl.iter(TR):
        if xmlparts.nearest(tr, TBL) is not tbl:
            continue  # a row of a nested table: read as part of its cell
        cells = [_cell_text(tc) for tc in tr.iter(TC) if xmlparts.nearest(tc, TR) is tr]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _cell_text(tc: etree._Element) -> str:
    texts = [_paragraph_text(p) for p in tc.iter(P) if not _in_paragraph(p, tc)]
    return " ".join(texts).replace("\n", " ").strip()


def _in_paragraph(p: etree._Element, stop: etree._Element) -> bool:
    """Whether `p` sits in a text box of another paragraph (read with that one) below `stop`."""
    for ancestor in p.iterancestors():
        if ancestor is stop:
            return False
        if ancestor.tag == P:
            return True
    return False
