"""Prices and money: list prices by default, overrides from settings, exact sums, never floats."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from costs import charges
from costs.money import fmt_usd, total, usd
from costs.prices import DEFAULT_PRICES, UnknownPrice, price_table
from ingest.config import Settings
from ingest.formats.pages import PageCount


def test_default_table_is_the_vendors_list_prices_with_the_date_checked() -> None:
    p = DEFAULT_PRICES
    assert isinstance(p.checked_on, date) and p.version
    assert dict(p.llamaparse_credits_per_page) == {
        "fast": 1,
        "cost_effective": 3,
        "agentic": 10,
        "agentic_plus": 45,
    }
    assert p.credits_usd(1000) == Decimal("1.25")
    assert p.pages_usd(10, "agentic_plus") == Decimal("0.5625")  # 450 credits
    assert p.tokens_usd(1_000_000, "text-embedding-3-small") == Decimal("0.02")
    assert p.tokens_usd(1_000_000, "text-embedding-3-large") == Decimal("0.13")
    assert p.tokens_usd(1_000_000, "text-embedding-ada-002") == Decimal("0.10")


def test_sub_micro_dollar_charges_sum_exactly() -> None:
    # One token of text-embedding-3-small is 0.02 micro-dollars: rounding each call would charge nothing.
    one = DEFAULT_PRICES.tokens_usd(1, "text-embedding-3-small")
    assert one == Decimal("0.00000002") and fmt_usd(one) == "0.00000002"
    assert total([one] * 1_000_000) == Decimal("0.02")
    assert total([DEFAULT_PRICES.tokens_usd(7, "text-embedding-3-large")] * 3) == Decimal("0.00000273")


def test_unknown_model_or_tier_is_refused_not_guessed() -> None:
    with pytest.raises(UnknownPrice):
        DEFAULT_PRICES.tokens_usd(10, "some-other-model")
    with pytest.raises(UnknownPrice):
        DEFAULT_PRICES.pages_usd(1, "premium")


def test_settings_override_prices_and_version_the_table() -> None:
    settings = Settings(
        _env_file=None,
        price_llamaparse_usd_per_1k_credits="1.00",
        price_llamaparse_credits_per_page={"agentic": 12},
        price_openai_usd_per_1m_tokens={"my-model": "0.0125"},
        prices_checked_on="2030-01-02",
    )
    table = price_table(settings)
    assert table.version == f"{DEFAULT_PRICES.version}+settings"
    assert table.checked_on == date(2030, 1, 2)
    assert table.pages_usd(2, "agentic") == Decimal("0.024")
    assert table.pages_usd(1, "fast") == Decimal("0.001")  # untouched tiers keep their credits
    assert table.tokens_usd(4, "my-model") == Decimal("0.00000005")
    assert table.tokens_usd(1_000_000, "text-embedding-3-small") == Decimal("0.02")
    assert price_table(Settings(_env_file=None)) is DEFAULT_PRICES


def test_an_override_that_cannot_be_exact_is_refused() -> None:
    settings = Settings(_env_file=None, price_openai_usd_per_1m_tokens={"m": "0.0000001"})
    with pytest.raises(ValueError, match="pico-dollar"):
        price_table(settings)


def test_money_is_never_a_float() -> None:
    with pytest.raises(TypeError):
        usd(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        usd("-1")
    with pytest.raises(ValueError):
        usd("0.0000000000001")
    assert usd("5") == Decimal(5)
    assert fmt_usd(Decimal("12.5")) == "12.500000"
    assert fmt_usd(Decimal("-0.000001")) == "-0.000001"


def test_parse_charge_uses_reported_credits_else_the_tier() -> None:
    estimate = charges.parse_estimate(PageCount(4, exact=True), tier="cost_effective", prices=DEFAULT_PRICES)
    assert estimate.usd == Decimal("0.015") and estimate.usage["credits"] == 12
    kw = {"estimated_pages": 4, "tier": "cost_effective", "prices": DEFAULT_PRICES}
    reported = charges.parse_actual(pages=4, credits=13, vendor_job_id="j1", **kw)
    assert reported.usd == Decimal("0.01625") and reported.usage["credits_for_pages"] == 12
    from_pages = charges.parse_actual(pages=3, credits=0, vendor_job_id=None, **kw)
    assert from_pages.usd == Decimal("0.01125") and not from_pages.usage["credits_reported"]
    no_pages = charges.parse_actual(pages=0, credits=0, vendor_job_id=None, **kw)
    assert no_pages.usage["pages"] == 4  # a format without pages is billed as the estimate's pages


def test_embed_charge_prices_tokens_at_the_model() -> None:
    charge = charges.embed_charge(1234, model="text-embedding-3-small", prices=DEFAULT_PRICES)
    assert charge.usd == Decimal("0.00002468")
    assert charge.usage == {"tokens": 1234, "requests": 1, "model": "text-embedding-3-small"}
