"""Alerts at 50%, 80% and 100% of a daily budget: once per day per service, however many processes ask;
a structured log event, a gauge, and a webhook whose failure never fails the work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
import respx
import structlog
from prometheus_client import REGISTRY

from costs import ledger
from costs.budget import BudgetExhausted
from costs.charges import Charge
from costs.meter import Meter
from ingest.config import Settings
from ingest.db.pool import open_pool

HOOK = "http://alerts.example.test/budget"
ALERT_EVENTS = ("budget_threshold_crossed", "budget_alert_webhook_failed")


@pytest.fixture
def meter(database_url: str) -> Iterator[Meter]:
    pool = open_pool(database_url, max_size=4)
    settings = Settings(_env_file=None, database_url=database_url, budget_alert_url=HOOK)
    with pool.connection() as conn:
        ledger.set_limit(conn, "openai", Decimal("1.00"))
    yield Meter(settings, pool)
    pool.close()


def spend(meter: Meter, key: str, amount: str) -> None:
    held = meter.reserve(key=key, service="openai", stage="embed", estimate=Charge(Decimal(amount)))
    meter.settle(held, Charge(Decimal(amount)))


@respx.mock
def test_each_threshold_fires_once_per_day(meter: Meter) -> None:
    hook = respx.post(HOOK).mock(return_value=httpx.Response(204))
    with structlog.testing.capture_logs() as logs:
        spend(meter, "a", "0.40")
        spend(meter, "b", "0.15")  # 55%: crosses 50
        spend(meter, "c", "0.10")  # 65%: nothing new
        spend(meter, "d", "0.35")  # 100%: crosses 80 and 100 at once
        with pytest.raises(BudgetExhausted):
            spend(meter, "e", "0.01")  # refused: 100% already fired today
    fired = [e for e in logs if e["event"] == "budget_threshold_crossed"]
    assert [(e["service"], e["threshold_pct"]) for e in fired] == [
        ("openai", 50),
        ("openai", 80),
        ("openai", 100),
    ]
    assert fired[0]["spent_usd"] == "0.550000" and fired[0]["limit_usd"] == "1.000000"
    assert [json.loads(call.request.content)["threshold_pct"] for call in hook.calls] == [50, 80, 100]
    assert REGISTRY.get_sample_value("ingest_budget_used_ratio", {"service": "openai"}) == 1.0


@respx.mock
def test_a_refused_reservation_fires_the_100_percent_alert(meter: Meter) -> None:
    respx.post(HOOK).mock(return_value=httpx.Response(204))
    spend(meter, "a", "0.90")
    with structlog.testing.capture_logs() as logs, pytest.raises(BudgetExhausted):
        spend(meter, "b", "0.20")
    assert [e["threshold_pct"] for e in logs if e["event"] == "budget_threshold_crossed"] == [100]


@respx.mock
def test_a_failing_webhook_is_logged_not_raised(meter: Meter) -> None:
    respx.post(HOOK).mock(side_effect=httpx.ConnectError("refused"))
    with structlog.testing.capture_logs() as logs:
        spend(meter, "a", "0.60")
    assert [e["event"] for e in logs if e["event"] in ALERT_EVENTS] == [
        "budget_threshold_crossed",
        "budget_alert_webhook_failed",
    ]
    assert meter.report().services["openai"].spent == Decimal("0.60")
