"""The price table: what each vendor charges per unit, versioned, with the date it was checked.

The defaults are the vendors' public list prices (docs/costs.md names the sources). Settings may
override any figure (`INGEST_PRICE_*`); the table then carries the version `<default>+settings` and the
date the operator states in `INGEST_PRICES_CHECKED_ON`. Every ledger entry records the version it was
priced with, so a price change never rewrites history.

LlamaParse bills credits: pages × credits-per-page of the tier, at a dollar price per 1,000 credits.
OpenAI bills the input tokens of an embedding request at a dollar price per 1M tokens; through the Batch
API at its own (half) price per 1M tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING

from costs.money import div, mul, usd

if TYPE_CHECKING:
    from ingest.config import Settings

SERVICES = ("llamaparse", "openai")


class UnknownPrice(ValueError):
    """A tier or model the price table has no figure for: nothing is billed at a guessed price."""


@dataclass(frozen=True, slots=True)
class PriceTable:
    version: str
    checked_on: date
    llamaparse_usd_per_1k_credits: Decimal
    llamaparse_credits_per_page: Mapping[str, int]
    openai_usd_per_1m_tokens: Mapping[str, Decimal]
    openai_batch_usd_per_1m_tokens: Mapping[str, Decimal]

    def credits_for_pages(self, pages: int, tier: str) -> int:
        if tier not in self.llamaparse_credits_per_page:
            raise UnknownPrice(f"no LlamaParse price for tier {tier!r}")
        return pages * self.llamaparse_credits_per_page[tier]

    def credits_usd(self, credits: int) -> Decimal:
        return mul(div(self.llamaparse_usd_per_1k_credits, 1000), credits)

    def pages_usd(self, pages: int, tier: str) -> Decimal:
        return self.credits_usd(self.credits_for_pages(pages, tier))

    def tokens_usd(self, tokens: int, model: str) -> Decimal:
        if model not in self.openai_usd_per_1m_tokens:
            raise UnknownPrice(
                f"no OpenAI price for model {model!r}; set INGEST_PRICE_OPENAI_USD_PER_1M_TOKENS"
            )
        return mul(div(self.openai_usd_per_1m_tokens[model], 1_000_000), tokens)

    def batch_tokens_usd(self, tokens: int, model: str) -> Decimal:
        """The Batch API's price of `tokens` input tokens of `model`."""
        if model not in self.openai_batch_usd_per_1m_tokens:
            raise UnknownPrice(
                f"no OpenAI Batch API price for model {model!r}; set INGEST_PRICE_OPENAI_BATCH_USD_PER_1M_TOKENS"
            )
        return mul(div(self.openai_batch_usd_per_1m_tokens[model], 1_000_000), tokens)


DEFAULT_PRICES = PriceTable(
    version="2026-11-23",
    checked_on=date(2026, 11, 23),
    llamaparse_usd_per_1k_credits=Decimal("1.25"),
    llamaparse_credits_per_page=MappingProxyType(
        {"fast": 1, "cost_effective": 3, "agentic": 10, "agentic_plus": 45}
    ),
    openai_usd_per_1m_tokens=MappingProxyType(
        {
            "text-embedding-3-small": Decimal("0.02"),
            "text-embedding-3-large": Decimal("0.13"),
            "text-embedding-ada-002": Decimal("0.10"),
        }
    ),
    # Batch API: half the endpoint's price (openai.com/api/pricing, "Batch").
    openai_batch_usd_per_1m_tokens=MappingProxyType(
        {
            "text-embedding-3-small": Decimal("0.01"),
            "text-embedding-3-large": Decimal("0.065"),
            "text-embedding-ada-002": Decimal("0.05"),
        }
    ),
)


def _checked_per_unit(price: Decimal, units: int, what: str) -> Decimal:
    """Refuse an override whose per-unit price would need more than 12 decimals (it could not be exact)."""
    try:
        usd(div(usd(price), units))
    except (ArithmeticError, ValueError):
        raise ValueError(f"price {price} for {what} is not exact to the pico-dollar per unit") from None
    return usd(price)


def price_table(settings: Settings, base: PriceTable = DEFAULT_PRICES) -> PriceTable:
    """The defaults with the settings' overrides applied."""
    credit_price = settings.price_llamaparse_usd_per_1k_credits
    pages = settings.price_llamaparse_credits_per_page
    tokens = settings.price_openai_usd_per_1m_tokens
    batch_tokens = settings.price_openai_batch_usd_per_1m_tokens
    if credit_price is None and not pages and not tokens and not batch_tokens:
        return base
    if any(v < 0 for v in pages.values()):
        raise ValueError("credits per page cannot be negative")
    return replace(
        base,
        version=f"{base.version}+settings",
        checked_on=settings.prices_checked_on or base.checked_on,
        llamaparse_usd_per_1k_credits=(
            base.llamaparse_usd_per_1k_credits
            if credit_price is None
            else _checked_per_unit(credit_price, 1000, "1,000 LlamaParse credits")
        ),
        llamaparse_credits_per_page=MappingProxyType({**base.llamaparse_credits_per_page, **pages}),
        openai_usd_per_1m_tokens=MappingProxyType(
            {
                **base.openai_usd_per_1m_tokens,
                **{m: _checked_per_unit(p, 1_000_000, f"1M tokens of {m}") for m, p in tokens.items()},
            }
        ),
        openai_batch_usd_per_1m_tokens=MappingProxyType(
            {
                **base.openai_batch_usd_per_1m_tokens,
                **{
                    m: _checked_per_unit(p, 1_000_000, f"1M batch tokens of {m}")
                    for m, p in batch_tokens.items()
                },
            }
        ),
    )
