"""Costs: the budget day, reservations, budget alerts, and overrides of the vendors' prices."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator


class CostSettings(BaseModel):
    """How spend is counted against the daily budget, and at which prices."""

    # --- costs --------------------------------------------------------------------------------------
    budget_timezone: str = Field(default="UTC", description="Time zone of the budget day.")
    reservation_ttl_s: int = Field(
        default=900,
        ge=1,
        description="A budget reservation not settled this long is presumed abandoned (crashed worker) and"
        " stops counting; a stage's, once its job is final, is charged `unknown` at its estimate (its call"
        " may have been billed). Keep it above the longest vendor call (job_time_limit_s).",
    )
    budget_alert_url: str | None = Field(
        default=None,
        description="Webhook POSTed once a day per service as 50%, 80% and 100% of its budget is spent.",
    )
    price_llamaparse_usd_per_1k_credits: Decimal | None = Field(
        default=None, description="Override of the LlamaParse credit price (USD per 1,000 credits)."
    )
    price_llamaparse_credits_per_page: dict[str, int] = Field(
        default_factory=dict, description='Override of credits per page by tier, e.g. {"agentic": 10}.'
    )
    price_openai_usd_per_1m_tokens: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Override of embedding prices (USD per 1M tokens), e.g. {"text-embedding-3-small": "0.02"}.',
    )
    price_openai_batch_usd_per_1m_tokens: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Override of Batch API embedding prices (USD per 1M tokens), e.g."
        ' {"text-embedding-3-small": "0.01"}.',
    )
    prices_checked_on: date | None = Field(
        default=None, description="When the overridden prices were checked against the vendors' pages."
    )

    @field_validator("budget_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        # Refused at start rather than at the first reservation of a worker.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value
