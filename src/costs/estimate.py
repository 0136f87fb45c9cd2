"""Quotes before any vendor call: pages and tokens of a document, priced. Pure: no network, no database.

Pages (what LlamaParse bills): counted by `ingest.formats.pages` (exact for PDF, else a heuristic
marked `pages_exact=False`).
Tokens (what OpenAI bills): the exact cl100k_base count of the chunks the pipeline would embed, made by
the same chunker with the same settings from the locally extracted text. When LlamaParse parses, its
text differs a little; the embed stage then reserves the exact count of the chunks it really embeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from costs.money import ZERO, total
from costs.prices import PriceTable
from ingest import formats
from ingest.chunking import chunk_document
from ingest.config import Settings
from ingest.formats.limits import Limits
from ingest.formats.pages import PageCount, count_pages
from ingest.parsed import ParsedDocument
from ingest.tokens import count_tokens


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
    batch_embed_usd: Decimal  # openai through the Batch API (`--when-cheapest`)

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
    batch_embed_usd: Decimal

    @property
    def total_usd(self) -> Decimal:
        return total([self.parse_usd, self.embed_usd])

    @property
    def batch_total_usd(self) -> Decimal:
        return total([self.parse_usd, self.batch_embed_usd])


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
        batch_embed_usd=prices.batch_tokens_usd(tokens, model),
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
        batch_embed_usd=total([q.batch_embed_usd for q in quotes]) if quotes else ZERO,
    )
