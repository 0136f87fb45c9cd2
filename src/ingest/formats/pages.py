"""Pages LlamaParse bills for a file, counted locally (no network):
- PDF: the page count PDFium reads from the file itself (exact).
- Every other type: ceil(characters of the locally extracted text blocks / 3,000), at least 1 (a
  heuristic, marked `exact=False`): about one printed page of prose, and the rule the mock parser
  bills shadow pages by, so a mock run's ledger matches the quote. When the file cannot be read locally,
  ceil(bytes / 3,000) stands in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pypdfium2 as pdfium

from ingest.errors import IngestError
from ingest.parsed import ParsedDocument

from .dispatch import extract
from .mediatypes import PDF

# PDFium is not thread-safe: page counting shares the lock the PDF extractor holds for every call.
from .pdf import PDFIUM_LOCK
from .sniff import sniff
from .source import Source, byte_size

CHARS_PER_PAGE = 3000


@dataclass(frozen=True, slots=True)
class PageCount:
    pages: int
    exact: bool  # True when read from the file (PDF), False for the characters heuristic


def pages_from_text(chars: int) -> int:
    return max(1, math.ceil(chars / CHARS_PER_PAGE))


def text_chars(document: ParsedDocument) -> int:
    return sum(len(block.text) for block in document.blocks)


def pdf_pages(source: Source) -> int | None:
    """The page count PDFium reads, or None when it cannot open the file."""
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(source if isinstance(source, bytes) else str(source))
        except pdfium.PdfiumError:
            return None
        try:
            return len(pdf)
        finally:
            pdf.close()


def count_pages(
    source: Source, *, filename: str, media_type: str | None = None, document: ParsedDocument | None = None
) -> PageCount:
    """Pages LlamaParse will bill for this file; `document` (already extracted) saves a second read."""
    try:
        media_type = media_type or sniff(source, filename)
    except IngestError:
        media_type = None
    if media_type == PDF:
        pages = pdf_pages(source)
        if pages is not None:
            return PageCount(pages, exact=True)
    elif document is not None:
        return PageCount(pages_from_text(text_chars(document)), exact=False)
    elif media_type is not None:
        try:
            extracted = extract(source, filename=filename, media_type=media_type)
        except IngestError:
            pass
        else:
            return PageCount(pages_from_text(text_chars(extracted)), exact=False)
    return PageCount(pages_from_text(byte_size(source)), exact=False)
