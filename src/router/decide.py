"""The routing decision: a pure function of (mode, key present, health, budget) → which client, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Mode(str, Enum):
    REAL = "real"
    MOCK = "mock"
    HYBRID = "hybrid"


class Choice(str, Enum):
    REAL = "real"  # call the vendor
    MOCK = "mock"  # serve locally, at no cost
    DEFER = "defer"  # wait: the budget day or the circuit cooldown will pass
    FAIL = "fail"  # cannot be served in this mode until an operator acts (e.g. no key)


@dataclass(frozen=True, slots=True)
class Decision:
    choice: Choice
    reason: str


def decide(service: str, mode: Mode, *, key_present: bool, healthy: bool, budget_ok: bool) -> Decision:
    """Decide who serves one call. `real` never falls back silently; `hybrid` falls back to mock."""
    if mode is Mode.MOCK:
        return Decision(Choice.MOCK, "mode is mock")
    if mode is Mode.REAL:
        if not key_present:
            return Decision(Choice.FAIL, f"{service} is in real mode but its API key is not set")
        if not healthy:
            return Decision(Choice.DEFER, f"{service} is in real mode and its circuit is open")
        if not budget_ok:
            return Decision(Choice.DEFER, f"{service} daily budget is spent")
        return Decision(Choice.REAL, "mode is real")
    if not key_present:
        return Decision(Choice.MOCK, "hybrid: no API key, using mock")
    if not healthy:
        return Decision(Choice.MOCK, "hybrid: circuit open, using mock")
    if not budget_ok:
        return Decision(Choice.MOCK, "hybrid: budget spent, using mock")
    return Decision(Choice.REAL, "hybrid: key set, healthy, budget left")
