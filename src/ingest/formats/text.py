"""Plain text: decoded (see decoding), split into paragraphs on blank lines and form feeds."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

from ingest.errors import EmptyDocument, UnsupportedType
from ingest.parsed import ParsedDocument

from . import decoding, normalize
from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import SUPPORTED, TEXT
from .source import Source, open_binary

_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n|\f")  # a blank line, or a page break
_CHUNK = 1024 * 1024


def check_not_blank(source: Source, limits: Limits) -> None:
    """Refuse text with nothing visible in it; stops reading at the first visible character."""
    with open_binary(source) as fh:
        head = fh.read(4)
        found = decoding.bom(head)
        encoding, skip = found if found else ("utf-8", 0)
        fh.seek(skip)
        decoder = codecs.getincrementaldecoder(encoding)("replace")
        while chunk := fh.read(_CHUNK):
            if normalize.has_visible(decoder.decode(chunk)):
                return
    raise EmptyDocument("the file holds only whitespace: there is no text to index")


def decode_text(data: bytes, charset: str | None = None) -> tuple[str, list[str]]:
    """The whole file as text, refusing it when the part after the sniffed head turns out binary."""
    reason = decoding.binary_reason(data)
    if reason:
        raise UnsupportedType(f"the file is {reason}, not a supported document ({SUPPORTED})")
    return decoding.decode(data, charset)


def extract(data: bytes, limits: Limits) -> ParsedDocument:
    text, warnings = decode_text(data)
    builder = BlockBuilder(limits.max_chars)
    builder.warnings.extend(warnings)
    for paragraph in _paragraphs(text.replace("\r\n", "\n").replace("\r", "\n")):
        builder.add(paragraph)
        if builder.full:
            break
    return builder.document(TEXT)


def _paragraphs(text: str) -> Iterator[str]:
    # Lazily: a list of millions of tiny paragraphs would cost more than the text itself.
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        yield text[start : match.start()]
        start = match.end()
    yield text[start:]
