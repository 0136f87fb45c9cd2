"""Estimates: pages from the PDF itself or the stated heuristic, tokens exactly as the pipeline embeds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from costs.alerts import crossed
from costs.budget import BudgetExhausted, budget_day, has_room, next_day_start, refusal
from costs.estimate import quote_file, sum_quotes
from costs.prices import DEFAULT_PRICES
from ingest import formats
from ingest.chunking import chunk_document
from ingest.config import Settings
from ingest.formats.pages import CHARS_PER_PAGE, count_pages
from ingest.tokens import count_tokens

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None)


def test_pdf_pages_are_read_from_the_file() -> None:
    path = SAMPLES / "carroll-wonderland.pdf"
    pdf = pdfium.PdfDocument(str(path))
    expected = len(pdf)
    pdf.close()
    counted = count_pages(path.read_bytes(), filename=path.name)
    assert counted.pages == expected and counted.exact


def test_other_types_use_characters_per_page(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("word " * (CHARS_PER_PAGE // 5 * 2 + 1))  # just over two pages of characters
    counted = count_pages(path, filename=path.name)
    assert (counted.pages, counted.exact) == (3, False)
    tiny = tmp_path / "tiny.md"
    tiny.write_text("# Hi\n\nshort")
    assert count_pages(tiny, filename=tiny.name).pages == 1


def test_unreadable_files_fall_back_to_bytes() -> None:
    broken = b"%PDF-1.7\n" + b"\x00" * (CHARS_PER_PAGE * 2)
    counted = count_pages(broken, filename="broken.pdf")
    assert counted == type(counted)(3, exact=False)


def test_quote_counts_the_tokens_of_the_chunks_the_pipeline_embeds(settings: Settings) -> None:
    path = SAMPLES / "docker-plugins-volume.md"
    quote = quote_file(path, settings=settings, prices=DEFAULT_PRICES)
    document = formats.extract(path, filename=path.name)
    pieces = chunk_document(document, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap)
    assert quote.chunks == len(pieces)
    assert quote.tokens == sum(count_tokens([c.text for c in pieces]))
    assert quote.embed_usd == DEFAULT_PRICES.tokens_usd(quote.tokens, settings.openai_embedding_model)
    assert quote.credits == quote.pages * DEFAULT_PRICES.llamaparse_credits_per_page[settings.llamaparse_tier]
    assert quote.total_usd == quote.parse_usd + quote.embed_usd


def test_quotes_sum_per_service_and_in_total(settings: Settings) -> None:
    paths = [SAMPLES / n for n in ("Apache-2.0.txt", "carroll-wonderland.pdf", "sqlite-whentouse.html")]
    quotes = [quote_file(p, settings=settings, prices=DEFAULT_PRICES) for p in paths]
    summed = sum_quotes(quotes)
    assert summed.files == 3 and summed.pages == sum(q.pages for q in quotes)
    assert summed.parse_usd == sum((q.parse_usd for q in quotes), Decimal(0))
    assert summed.total_usd == sum((q.total_usd for q in quotes), Decimal(0))
    assert sum_quotes([]).total_usd == 0


def test_budget_day_follows_the_configured_time_zone() -> None:
    at = datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
    assert budget_day(at, "UTC") == date(2026, 3, 10)
    assert budget_day(at, "America/New_York") == date(2026, 3, 9)
    assert next_day_start(at, "UTC") == datetime(2026, 3, 11, tzinfo=UTC)
    assert next_day_start(at, "America/New_York") == datetime(2026, 3, 10, 4, tzinfo=UTC)  # EDT since Mar 8
    assert next_day_start(at, "Europe/Berlin") == datetime(2026, 3, 10, 23, tzinfo=UTC)


def test_deferral_delay_rounds_up_to_the_next_day() -> None:
    now = datetime(2026, 3, 10, 23, 59, 59, 500_000, tzinfo=UTC)
    refused = BudgetExhausted(
        "spent",
        service="openai",
        limit_of="openai",
        day=now.date(),
        resume_at=next_day_start(now, "UTC"),
        now=now,
    )
    assert refused.delay_s == 1


def test_an_estimate_must_fit_the_service_limit_and_the_overall_one() -> None:
    counted = {"openai": Decimal("0.4"), "llamaparse": Decimal("0.5")}
    limits = {"openai": Decimal("0.5"), "all": Decimal(1)}
    assert refusal("openai", Decimal("0.1"), counted, limits) is None
    assert refusal("openai", Decimal("0.10000001"), counted, limits) == "openai"
    assert refusal("llamaparse", Decimal("0.2"), counted, limits) == "all"
    assert refusal("llamaparse", Decimal("0.1"), counted, {}) is None
    assert has_room("openai", counted, limits)
    assert not has_room("openai", counted, {"all": Decimal("0.9")})


def test_alert_thresholds() -> None:
    assert crossed(Decimal("0.49"), Decimal(1)) == []
    assert crossed(Decimal("0.5"), Decimal(1)) == [50]
    assert crossed(Decimal("0.99999999"), Decimal(1)) == [50, 80]
    assert crossed(Decimal(1), Decimal(1)) == [50, 80, 100]
    assert crossed(Decimal(0), Decimal(0)) == [50, 80, 100]


def test_an_unknown_budget_time_zone_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings(_env_file=None, budget_timezone="Mars/Olympus")
