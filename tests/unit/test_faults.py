"""Fault plans for the stand-ins: where they come from, and reproducible decisions."""

from __future__ import annotations

import asyncio

import pytest

from mocks.faults import Fault, FaultInjector, FaultKind, FaultPlan, apply, choose, draw


def test_plan_from_env_and_header_override() -> None:
    plan = FaultPlan.from_env(environ={"MOCKS_RATE_429": "0.25", "MOCKS_LATENCY_MS": "5", "OTHER": "x"})
    assert plan == FaultPlan(rate_429=0.25, latency_ms=5)
    merged = plan.merged_with_headers({"X-Mock-Faults": "rate_500=0.1, seed=7"})
    assert merged == FaultPlan(rate_429=0.25, rate_500=0.1, latency_ms=5, seed=7)
    assert plan.merged_with_headers({"x-mock-faults": ""}) is plan
    assert plan.merged_with_headers({}) is plan


@pytest.mark.parametrize(
    "header", ["rate_429", "nope=1", "rate_429=lots", "rate_429=0.8,rate_500=0.8", "rate_500=-1"]
)
def test_bad_settings_are_refused(header: str) -> None:
    with pytest.raises(ValueError):
        FaultPlan().merged_with_headers({"X-Mock-Faults": header})


def test_decisions_are_reproducible_per_seed_and_key() -> None:
    plan = FaultPlan(rate_429=0.2, rate_500=0.2, rate_timeout=0.1, seed=5)

    def run(keys: list[str]) -> dict[str, list[object]]:
        injector = FaultInjector(plan)
        out: dict[str, list[object]] = {"a": [], "b": []}
        for key in keys:
            fault = injector.decide(key)
            out[key].append(fault.kind if fault else None)
        return out

    # The stream of one key does not depend on how other keys' requests interleave with it.
    assert run(["a"] * 50 + ["b"] * 50) == run(["a", "b"] * 50)
    other_seed = FaultInjector(FaultPlan(rate_429=0.2, rate_500=0.2, rate_timeout=0.1, seed=6))
    assert [other_seed.decide("a") for _ in range(50)] != [FaultInjector(plan).decide("a") for _ in range(50)]


def test_rates_are_honoured_and_counted() -> None:
    injector = FaultInjector(FaultPlan(rate_429=0.3, rate_500=0.1, seed=1))
    for _ in range(4000):
        injector.decide("k")
    stats = injector.stats
    assert stats.served + stats.failed == 4000
    assert 0.27 < stats.by_kind["rate_429"] / 4000 < 0.33
    assert 0.08 < stats.by_kind["rate_500"] / 4000 < 0.12
    injector.reset()
    assert injector.stats.served == 0


def test_pure_pieces() -> None:
    assert draw(1, "k", 3) == draw(1, "k", 3)
    assert 0 <= draw(1, "k", 3) < 1
    plan = FaultPlan(rate_429=0.5, rate_quota=0.5)
    assert choose(plan, 0.1) is FaultKind.RATE_LIMIT
    assert choose(plan, 0.9) is FaultKind.QUOTA
    assert choose(FaultPlan(), 0.0) is None


def test_apply_renders_each_fault() -> None:
    async def render(fault: Fault | None) -> object:
        return await apply(fault)

    assert asyncio.run(render(None)) is None
    assert asyncio.run(render(Fault(None, latency_s=0.001))) is None
    limited = asyncio.run(render(Fault(FaultKind.RATE_LIMIT, retry_after_s=0.25)))
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1" and limited.headers["retry-after-ms"] == "250"
    assert asyncio.run(render(Fault(FaultKind.SERVER_ERROR))).status_code == 500
    assert asyncio.run(render(Fault(FaultKind.QUOTA))).status_code == 402
    assert asyncio.run(render(Fault(FaultKind.TIMEOUT, timeout_s=0.001))).status_code == 504
    malformed = asyncio.run(render(Fault(FaultKind.MALFORMED)))
    assert malformed.status_code == 200 and malformed.body.startswith(b'{"object"')
