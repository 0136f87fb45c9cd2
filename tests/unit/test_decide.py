"""The routing decision over every combination of its inputs: mode × key × healthy × budget (3 × 2 × 2 × 2)."""

from __future__ import annotations

import itertools

import pytest

from router.decide import Choice, Mode, decide

REAL, MOCK, DEFER, FAIL = Choice.REAL, Choice.MOCK, Choice.DEFER, Choice.FAIL

# (mode, key present, healthy, budget ok) -> (choice, words the reason must hold)
TABLE = {
    # mock: always the mock, whatever else holds
    (Mode.MOCK, False, False, False): (MOCK, "mode is mock"),
    (Mode.MOCK, False, False, True): (MOCK, "mode is mock"),
    (Mode.MOCK, False, True, False): (MOCK, "mode is mock"),
    (Mode.MOCK, False, True, True): (MOCK, "mode is mock"),
    (Mode.MOCK, True, False, False): (MOCK, "mode is mock"),
    (Mode.MOCK, True, False, True): (MOCK, "mode is mock"),
    (Mode.MOCK, True, True, False): (MOCK, "mode is mock"),
    (Mode.MOCK, True, True, True): (MOCK, "mode is mock"),
    # real: never the mock; no key fails (an operator must act), the rest waits
    (Mode.REAL, False, False, False): (FAIL, "API key is not set"),
    (Mode.REAL, False, False, True): (FAIL, "API key is not set"),
    (Mode.REAL, False, True, False): (FAIL, "API key is not set"),
    (Mode.REAL, False, True, True): (FAIL, "API key is not set"),
    (Mode.REAL, True, False, False): (DEFER, "circuit is open"),
    (Mode.REAL, True, False, True): (DEFER, "circuit is open"),
    (Mode.REAL, True, True, False): (DEFER, "budget is spent"),
    (Mode.REAL, True, True, True): (REAL, "mode is real"),
    # hybrid: real only with a key, a closed circuit and budget; otherwise the mock, saying why
    (Mode.HYBRID, False, False, False): (MOCK, "no API key"),
    (Mode.HYBRID, False, False, True): (MOCK, "no API key"),
    (Mode.HYBRID, False, True, False): (MOCK, "no API key"),
    (Mode.HYBRID, False, True, True): (MOCK, "no API key"),
    (Mode.HYBRID, True, False, False): (MOCK, "circuit open"),
    (Mode.HYBRID, True, False, True): (MOCK, "circuit open"),
    (Mode.HYBRID, True, True, False): (MOCK, "budget spent"),
    (Mode.HYBRID, True, True, True): (REAL, "key set, healthy, budget left"),
}


def test_the_table_covers_every_combination() -> None:
    assert set(TABLE) == set(itertools.product(Mode, (False, True), (False, True), (False, True)))


@pytest.mark.parametrize(("inputs", "expected"), TABLE.items(), ids=lambda v: "-".join(map(str, v)))
def test_decision(inputs: tuple[Mode, bool, bool, bool], expected: tuple[Choice, str]) -> None:
    mode, key_present, healthy, budget_ok = inputs
    decision = decide("openai", mode, key_present=key_present, healthy=healthy, budget_ok=budget_ok)
    assert decision.choice is expected[0]
    assert expected[1] in decision.reason


@pytest.mark.parametrize("service", ["llamaparse", "openai"])
def test_real_mode_reasons_name_the_service(service: str) -> None:
    for key_present, healthy, budget_ok in [(False, True, True), (True, False, True), (True, True, False)]:
        decision = decide(service, Mode.REAL, key_present=key_present, healthy=healthy, budget_ok=budget_ok)
        assert decision.reason.startswith(service)
