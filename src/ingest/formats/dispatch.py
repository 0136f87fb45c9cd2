"""The three entry points: sniff (formats.sniff), check and extract, routed by media type."""

from __future__ import annotations

from collections.abc import Callable

from ingest.errors import EmptyDocument, UnsupportedType
from ingest.parsed import ParsedDocument

from . import docx, html, markdown, odt, pdf, text
from .limits import Limits
from .mediatypes import DOCX, HTML, LABELS, MARKDOWN, ODT, PDF, SUPPORTED, TEXT
from .sniff import sniff
from .source import Source, byte_size, read_all

_CHECKS: dict[str, Callable[[Source, Limits], None]] = {
    PDF: pdf.check,
    DOCX: docx.check,
    ODT: odt.check,
    HTML: text.check_not_blank,
    MARKDOWN: text.check_not_blank,
    TEXT: text.check_not_blank,
}
# Container formats read from the source itself (a path is never loaded whole); text from bytes.
_FROM_SOURCE: dict[str, Callable[[Source, Limits], ParsedDocument]] = {
    PDF: pdf.extract,
    DOCX: docx.extract,
    ODT: odt.extract,
}
_FROM_BYTES: dict[str, Callable[[bytes, Limits], ParsedDocument]] = {
    HTML: html.extract,
    MARKDOWN: markdown.extract,
    TEXT: text.extract,
}


DEFAULT_LIMITS = Limits()


def check(source: Source, media_type: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Cheap upload-time checks; raise EmptyDocument/UnreadableDocument with one clear line."""
    if media_type not in _CHECKS:
        raise UnsupportedType(f"{media_type} is not a supported document type ({SUPPORTED})")
    if byte_size(source) == 0:
        raise EmptyDocument("the file is empty (0 bytes)")
    _CHECKS[media_type](source, limits)


def extract(
    source: Source, *, filename: str, media_type: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> ParsedDocument:
    """Sniff (unless told the type), check, then extract the blocks in reading order."""
    media_type = media_type or sniff(source, filename)
    check(source, media_type, limits)
    if media_type in _FROM_SOURCE:
        document = _FROM_SOURCE[media_type](source, limits)
    else:
        document = _FROM_BYTES[media_type](read_all(source), limits)
    if not document.blocks:
        hint = " (a scanned PDF needs OCR)" if media_type == PDF else ""
        raise EmptyDocument(f"the {LABELS[media_type]} has no extractable text{hint}")
    return document
