"""What a call costs: usage (estimated or reported) priced by the table. Pure functions.

LlamaParse: a charge is the credits the service reports; when it reports none (the mock, or a client
that cannot read them) it is the pages times the tier's credits per page. A parse that reports no pages
(a format without pages) is billed as the estimate's pages. OpenAI: the billed prompt tokens times the
model's price. Shadow (mock) costs are priced the same way, at the real service's tier and model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from costs.prices import PriceTable
from ingest.formats.pages import PageCount


@dataclass(frozen=True, slots=True)
class Charge:
    usd: Decimal
    usage: Mapping[str, Any] = field(default_factory=dict)


def parse_estimate(pages: PageCount, *, tier: str, prices: PriceTable) -> Charge:
    credits = prices.credits_for_pages(pages.pages, tier)
    return Charge(
        prices.credits_usd(credits),
        {"pages": pages.pages, "pages_exact": pages.exact, "credits": credits, "tier": tier},
    )


def parse_actual(
    *,
    pages: int,
    credits: int,
    vendor_job_id: str | None,
    estimated_pages: int,
    tier: str,
    prices: PriceTable,
) -> Charge:
    billed_pages = pages or estimated_pages
    expected = prices.credits_for_pages(billed_pages, tier)
    billed_credits = credits or expected
    usage: dict[str, Any] = {
        "pages": billed_pages,
        "credits": billed_credits,
        "credits_reported": bool(credits),
        # what the table says those pages cost: a vendor figure that differs is logged by the meter
        "credits_for_pages": expected,
        "tier": tier,
    }
    if vendor_job_id:
        usage["vendor_job_id"] = vendor_job_id
    return Charge(prices.credits_usd(billed_credits), usage)


def embed_charge(tokens: int, *, model: str, prices: PriceTable, requests: int = 1) -> Charge:
    return Charge(prices.tokens_usd(tokens, model), {"tokens": tokens, "requests": requests, "model": model})


def batch_embed_charge(tokens: int, *, model: str, prices: PriceTable, requests: int = 1) -> Charge:
    """Embedding tokens through the Batch API: its price, with what the endpoint would have charged."""
    return Charge(
        prices.batch_tokens_usd(tokens, model),
        {
            "tokens": tokens,
            "requests": requests,
            "model": model,
            "route": "batch",
            "full_usd": str(prices.tokens_usd(tokens, model)),
        },
    )
