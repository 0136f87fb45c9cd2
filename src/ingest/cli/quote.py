"""The quote behind `ingest add --estimate`: pages, tokens and dollars per file, without calling a vendor."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from costs.estimate import Quote, quote_file, sum_quotes
from costs.money import fmt_usd
from costs.prices import price_table
from ingest.cli.common import err, out
from ingest.cli.files import expand
from ingest.config import Settings
from ingest.errors import IngestError


def estimate(paths: list[Path]) -> None:
    """Print the quote for PATHS (pages, tokens, dollars per service) without calling any vendor.

    Reads the files locally only; exits 1 when a file could not be quoted (it would be refused).
    """
    settings = Settings()
    prices = price_table(settings)
    quotes: list[Quote] = []
    refused: list[tuple[Path, str]] = []
    for path in expand(paths):
        try:
            quotes.append(quote_file(path, settings=settings, prices=prices))
        except IngestError as exc:
            refused.append((path, str(exc)))
    summed = sum_quotes(quotes)
    table = Table(
        title=f"quote in USD: llamaparse {settings.llamaparse_tier},"
        f" openai {settings.openai_embedding_model}, prices of {prices.checked_on}; ~ marks estimated pages",
        title_justify="left",
    )
    for column in ("file", "pages", "credits", "tokens", "llamaparse", "openai", "total"):
        table.add_column(column, justify="left" if column == "file" else "right", overflow="fold")
    for q in quotes:
        pages = str(q.pages) if q.pages_exact else f"~{q.pages}"
        cells = (
            str(q.credits),
            str(q.tokens),
            fmt_usd(q.parse_usd),
            fmt_usd(q.embed_usd),
            fmt_usd(q.total_usd),
        )
        table.add_row(q.filename, pages, *cells)
    out.print(table)
    out.print(
        f"llamaparse: {summed.pages} pages, {summed.credits} credits, ${fmt_usd(summed.parse_usd)}\n"
        f"openai: {summed.tokens} tokens, ${fmt_usd(summed.embed_usd)}\n"
        f"openai Batch API (--when-cheapest): ${fmt_usd(summed.batch_embed_usd)}\n"
        f"total: {summed.files} files, ${fmt_usd(summed.total_usd)}\n"
        f"total with --when-cheapest: ${fmt_usd(summed.batch_total_usd)}",
        markup=False,
        highlight=False,
    )
    for path, reason in refused:
        err.print(f"not quoted: {path}: {reason}", markup=False, highlight=False)
    if refused:
        raise typer.Exit(1)
