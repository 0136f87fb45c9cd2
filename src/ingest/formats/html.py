"""HTML: the visible text in reading order, streamed through libxml2's HTML parser (lxml).

The page is parsed incrementally and every element is freed once read, so memory follows the
largest heading, `pre` or dropped element rather than the page (a full lxml tree costs about
ten times the HTML). Text between tags is taken at tag boundaries, where the parser has it.

Dropped with their content: head, script, style, noscript, template, svg, iframe, object,
embed, canvas, select, textarea, nav, navigation landmarks (`role="navigation"`) and elements
marked hidden (`hidden`, `aria-hidden="true"`, inline `display:none`). Comments and processing
instructions never reach the tree. Nothing is fetched or executed: attributes (event handlers,
URLs) are never read as text. Headings h1-h6 drive the heading path; li -> list, pre -> code; a
table of plain cells -> one table block ("a | b" rows), while a table holding block content
(paragraphs, lists, nested tables: page layout) is read cell by cell as paragraphs. Other block
elements separate paragraphs. The charset comes from a byte-order mark, else <meta>, else UTF-8.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from ingest.parsed import ParsedDocument

from . import normalize
from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import HTML
from .text import decode_text

_DROPPED = (
    "head", "script", "style", "noscript", "template", "svg", "iframe", "object", "embed",
    "canvas", "select", "textarea", "nav",
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr",
    "html", "legend", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "ul", *_HEADINGS,
}  # fmt: skip
# Inside a table, any of these makes it a layout table.
_LAYOUT = {"table", "p", "div", "ul", "ol", "dl", "pre", "blockquote", "section", "article", *_HEADINGS}
_CELLS = ("td", "th", "caption")
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE
)
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")
_WHITESPACE = re.compile(r"\s+")
# WHATWG: these labels mean windows-1252 in HTML.
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii", "cp819"}
_FEED_CHARS = 1024 * 1024


def declared_charset(head: bytes) -> str | None:
    """The codec a <meta> tag in the first KiBs declares, if Python knows it."""
    match = _META_CHARSET.search(head[:4096])
    if not match:
        return None
    label = match.group(1).decode("ascii").lower()
    if label in _LATIN1_LABELS:
        return "cp1252"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # A page served as bytes cannot really be UTF-16 without a BOM; such meta tags are wrong.
    return None if name.startswith(("utf-16", "utf-32")) else name


def extract(data: bytes, limits: Limits) -> ParsedDocument:
    text, warnings = decode_text(data, declared_charset(data))
    # The text is decoded already: an XML declaration's encoding would contradict it.
    text = normalize.strip_controls(_XML_DECLARATION.sub("", text, count=1))
    builder = BlockBuilder(limits.max_chars)
    builder.warnings.extend(warnings)
    reader = _Reader(builder)
    parser = etree.HTMLPullParser(
        events=("start", "end"), remove_comments=True, remove_pis=True, no_network=True
    )
    for offset in range(0, len(text), _FEED_CHARS):
        parser.feed(text[offset : offset + _FEED_CHARS])
        reader.read(parser.read_events())
        if builder.full:
            break
    else:
        parser.close()
        reader.read(parser.read_events())
        reader.flush()
    return builder.document(HTML)


def _flat(text: str) -> str:
    return _WHITESPACE.sub(" ", text)


def _hidden(element: etree._Element) -> bool:
    return (
        element.tag in _DROPPED
        or element.get("hidden") is not None
        or element.get("aria-hidden") == "true"
        or element.get("role") == "navigation"
        or _DISPLAY_NONE.search(element.get("style") or "") is not None
    )


def _release(element: etree._Element) -> None:
    """Free a read element (its tail is still to come) and the siblings read before it."""
    element.clear(keep_tail=True)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _text_before(element: etree._Element) -> str | None:
    previous = element.getprevious()
    parent = element.getparent()
    text: str | None = previous.tail if previous is not None else None if parent is None else parent.text
    return text


def _text_at_end(element: etree._Element) -> str | None:
    text: str | None = element[-1].tail if len(element) else element.text
    return text


@dataclass(slots=True)
class _Table:
    layout: bool = False
    caption: str = ""
    rows: list[list[str]] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [self.caption, *(cell for row in self.rows for cell in row)]

    def text(self) -> str:
        lines = [" | ".join(row) for row in self.rows if any(row)]
        return "\n".join([self.caption, *lines] if self.caption else lines)


class _Reader:
    """Turns parser events into blocks; `skipping` and `captured` are subtrees read as a whole."""

    def __init__(self, builder: BlockBuilder) -> None:
        self.builder = builder
        self.inline: list[str] = []
        self.list_depth = 0
        self.skipping: etree._Element | None = None
        self.captured: etree._Element | None = None
        self.tables: list[_Table] = []

    def read(self, events: Iterable[tuple[str, etree._Element]]) -> None:
        for event, element in events:
            if not isinstance(element.tag, str):
                continue  # entities: no text of their own
            if event == "start":
                self._start(element)
            else:
                self._end(element)
            if self.builder.full:
                return

    def flush(self) -> None:
        if self.inline:
            self.builder.add("".join(self.inline), kind="list" if self.list_depth else "paragraph")
            self.inline.clear()

    def _take(self, text: str | None) -> None:
        if text:
            self.inline.append(_flat(text))

    def _start(self, element: etree._Element) -> None:
        if self.skipping is not None or self.captured is not None:
            return
        self._take(_text_before(element))
        tag = element.tag
        if _hidden(element):
            self.skipping = element
        elif tag == "br":
            self.inline.append("\n")
        elif tag in _BLOCKS:
            if self.tables and tag in _LAYOUT:
                self._to_layout()
            self.flush()
            if tag in _HEADINGS or tag == "pre":
                self.captured = element
            elif tag == "table":
                self.tables.append(_Table())
            elif tag == "li":
                self.list_depth += 1
            elif tag == "tr" and self.tables and not self.tables[-1].layout:
                self.tables[-1].rows.append([])

    def _end(self, element: etree._Element) -> None:
        if self.skipping is not None or self.captured is not None:
            if element is self.captured:
                self.captured = None
                self._read_whole(element)
            elif element is self.skipping:
                self.skipping = None
            else:
                return  # inside: read with its root
            _release(element)
            return
        self._take(_text_at_end(element))
        tag = element.tag
        table = self.tables[-1] if self.tables else None
        if table is not None and not table.layout and tag in _CELLS:
            text = _flat("".join(self.inline)).strip()
            self.inline.clear()
            if tag == "caption":
                table.caption = text
            else:
                if not table.rows:
                    table.rows.append([])  # a cell outside any row
                table.rows[-1].append(text)
        elif tag == "table" and table is not None:
            self.tables.pop()
            self.flush()
            if not table.layout:
                self.builder.add(table.text(), kind="table")
        elif tag in _BLOCKS:
            self.flush()
            if tag == "li":
                self.list_depth -= 1
        _release(element)

    def _to_layout(self) -> None:
        """Block content in a table: it lays out the page, so what it collected is paragraphs."""
        for table in self.tables:
            if not table.layout:
                table.layout = True
                for cell in table.cells():
                    self.builder.add(cell)

    def _read_whole(self, element: etree._Element) -> None:
        for inner in list(element.iterdescendants()):
            if isinstance(inner.tag, str) and _hidden(inner):
                inner.clear(keep_tail=True)
        text = "".join(element.itertext())
        if element.tag == "pre":
            self.builder.add(text, kind="code")
        else:
            # Documentation generators append a "¶" permalink to every heading.
            self.builder.heading(_flat(text).strip().rstrip(" ¶"), _HEADINGS[str(element.tag)])
