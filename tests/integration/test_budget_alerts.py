"""Alerts at 50%, 80% and 100% of a daily budget: once per day per service, however many processes ask;
a structured log event, a gauge, and a webhook whose failure never fails the work."""

from __future__ import annotations

import ipaddress
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
from ingest import destinations, netguard
from ingest.config import Settings
from ingest.db.pool import open_pool
from ingest.netguard import Target

HOOK = "http://alerts.example.test/budget"
# The name resolves (see `public_dns`) to a public address, which the guarded client connects to by number.
HOOK_ADDRESS = ipaddress.ip_address("93.184.215.14")
HOOK_CONNECTED = f"http://{HOOK_ADDRESS}/budget"
ALERT_EVENTS = ("budget_threshold_crossed", "budget_alert_webhook_failed")


@pytest.fixture(autouse=True)
def public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The alert's host resolves to a public address (no DNS here); any other host does not resolve."""

    resolve = destinations.addresses_of

    def addresses_of(target: Target) -> list[netguard.IPAddress]:
        return [HOOK_ADDRESS] if target.host == "alerts.example.test" else resolve(target)

    monkeypatch.setattr(destinations, "addresses_of", addresses_of)


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
    hook = respx.post(HOOK_CONNECTED).mock(return_value=httpx.Response(204))
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
    respx.post(HOOK_CONNECTED).mock(return_value=httpx.Response(204))
    spend(meter, "a", "0.90")
    with structlog.testing.capture_logs() as logs, pytest.raises(BudgetExhausted):
        spend(meter, "b", "0.20")
    assert [e["threshold_pct"] for e in logs if e["event"] == "budget_threshold_crossed"] == [100]


@respx.mock
def test_a_failing_webhook_is_logged_not_raised(meter: Meter) -> None:
    respx.post(HOOK_CONNECTED).mock(side_effect=httpx.ConnectError("refused"))
    with structlog.testing.capture_logs() as logs:
        spend(meter, "a", "0.60")
    assert [e["event"] for e in logs if e["event"] in ALERT_EVENTS] == [
        "budget_threshold_crossed",
        "budget_alert_webhook_failed",
    ]
    assert meter.report().services["openai"].spent == Decimal("0.60")


@respx.mock
def test_the_alert_is_sent_to_the_resolved_address_under_its_own_name(meter: Meter) -> None:
    hook = respx.post(HOOK_CONNECTED).mock(return_value=httpx.Response(204))
    spend(meter, "a", "0.60")
    (call,) = hook.calls
    assert call.request.headers["host"] == "alerts.example.test"
    assert json.loads(call.request.content)["threshold_pct"] == 50


@respx.mock
def test_an_alert_url_inside_the_network_is_never_contacted(database_url: str) -> None:
    # respx answers every request it sees; none must be made.
    anything = respx.route().mock(return_value=httpx.Response(204))
    pool = open_pool(database_url, max_size=2)
    settings = Settings(_env_file=None, database_url=database_url, budget_alert_url="http://127.1:9/hook")
    with pool.connection() as conn:
        ledger.set_limit(conn, "openai", Decimal("1.00"))
    try:
        with structlog.testing.capture_logs() as logs:
            spend(Meter(settings, pool), "a", "0.60")
    finally:
        pool.close()
    (failed,) = [e for e in logs if e["event"] == "budget_alert_webhook_failed"]
    assert "loopback" in failed["error"] and not anything.called
