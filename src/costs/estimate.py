"""Quotes before any vendor call: pages and tokens of a document, priced. Pure: no network, no database.

Pages (what LlamaParse bills):
- PDF: the page count PDFium reads from the file itself (exact).
- Every other type: ceil(characters of the locally extracted text blocks / 3,000), at least 1 (a
  heuristic, marked `pages_exact=False`): about one printed page of prose, and the rule the mock parser
  bills shadow pages by, so a mock run's ledger matches the quote. When the file cannot be read locally,
  ceil(bytes / 3,000) stands in.
Tokens (what OpenAI bills): the exact cl100k_base count of the chunks the pipeline would embed, made by
the same chunker with the same settings from the locally extracted text. When LlamaParse parses, its
text differs a little; the embed stage then reserves the exact count of the chunks it really embeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium

from costs.money import ZERO, total
from costs.prices import PriceTable
from ingest import formats
from ingest.chunking import chunk_document
from ingest.config import Settings
from ingest.errors import IngestError
from ingest.formats.limits import Limits
from ingest.formats.mediatypes import PDF

# PDFium is not thread-safe: page counting shares the lock the PDF extractor holds for every call.
from ingest.formats.pdf import _LOCK as PDFIUM_LOCK
from ingest.formats.source import Source, byte_size
from ingest.parsed import ParsedDocument
from ingest.tokens import count_tokens

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
        media_type = media_type or formats.sniff(source, filename)
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
            extracted = formats.extract(source, filename=filename, media_type=media_type)
        except IngestError:
            pass
        else:
            return PageCount(pages_from_text(text_chars(extracted)), exact=False)
    return PageCount(pages_from_text(byte_size(source)), exact=False)


def embed_tokens(texts: Sequence[str]) -> int:
    """The tokens OpenAI bills for embedding `texts`: their exact cl100k_base counts, summed."""
    return sum(count_tokens(texts))


@dataclass(frozen=True, slots=True)
class Quote:
    """What one file would cost with the real services at the configured tier and model."""

    filename: str
    media_type: str
    pages: int
    pages_exact: bool
    credits: int
    chunks: int
    tokens: int
    parse_usd: Decimal  # llamaparse
    embed_usd: Decimal  # openai

    @property
    def total_usd(self) -> Decimal:
        return total([self.parse_usd, self.embed_usd])


@dataclass(frozen=True, slots=True)
class QuoteTotal:
    files: int
    pages: int
    credits: int
    tokens: int
    parse_usd: Decimal
    embed_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return total([self.parse_usd, self.embed_usd])


def quote_document(
    document: ParsedDocument, pages: PageCount, *, filename: str, settings: Settings, prices: PriceTable
) -> Quote:
    tier, model = settings.llamaparse_tier, settings.openai_embedding_model
    chunks = chunk_document(document, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    tokens = sum(c.token_count for c in chunks)
    return Quote(
        filename=filename,
        media_type=document.media_type,
        pages=pages.pages,
        pages_exact=pages.exact,
        credits=prices.credits_for_pages(pages.pages, tier),
        chunks=len(chunks),
        tokens=tokens,
        parse_usd=prices.pages_usd(pages.pages, tier),
        embed_usd=prices.tokens_usd(tokens, model),
    )


def quote_file(path: Path, *, settings: Settings, prices: PriceTable) -> Quote:
    """Read the file locally (raising the same errors an upload would) and price it."""
    document = formats.extract(path, filename=path.name, limits=Limits.from_settings(settings))
    pages = count_pages(path, filename=path.name, media_type=document.media_type, document=document)
    return quote_document(document, pages, filename=path.name, settings=settings, prices=prices)


def sum_quotes(quotes: Iterable[Quote]) -> QuoteTotal:
    quotes = list(quotes)
    return QuoteTotal(
        files=len(quotes),
        pages=sum(q.pages for q in quotes),
        credits=sum(q.credits for q in quotes),
        tokens=sum(q.tokens for q in quotes),
        parse_usd=total([q.parse_usd for q in quotes]) if quotes else ZERO,
        embed_usd=total([q.embed_usd for q in quotes]) if quotes else ZERO,
    )
