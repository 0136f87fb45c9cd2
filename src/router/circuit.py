"""A circuit breaker per service: the pure state machine, and the shell that keeps its state shared.

    closed ──(threshold failures in a row, or one auth/quota error)──► open
    open ──(cooldown passed: the first caller takes the probe)──► half-open
    half-open ──(the probe succeeds)──► closed
    half-open ──(the probe fails)──► open (a new cooldown)

While half-open exactly one caller is let through: the one that took the probe. Others are refused until
it reports. A probe that never reports (its worker died) is given up after its lease (a cooldown),
and the next caller probes instead.

The transitions are plain functions over a frozen `Circuit` and a time in seconds. `CircuitBreaker` runs
them inside a `CircuitStore`'s atomic read-modify-write, so every process (on any machine) agrees on the
state: Redis when configured, else PostgreSQL (`router.backends`). The time is wall-clock seconds
(`time.time`), because a circuit opened by one machine is timed by another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class State(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Outcome(str, Enum):
    SUCCESS = "success"  # the service answered (even to refuse an input: it is up)
    FAILURE = "failure"  # the service did not answer usefully (5xx, timeouts, retries spent)
    FATAL = "fatal"  # the key or the account was refused: no call can succeed until an operator acts
    NONE = "none"  # the call ended for a reason of ours (a bug, a time limit): no verdict on the service


@dataclass(frozen=True, slots=True)
class Policy:
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    # A probe not reported within this is presumed lost (its worker died, or its job found no call to
    # make) and the next caller probes. One cooldown: at most one probe per cooldown reaches a sick service.
    probe_lease_s: float | None = None

    def __post_init__(self) -> None:
        lease_ok = self.probe_lease_s is None or self.probe_lease_s > 0
        if self.failure_threshold < 1 or self.cooldown_s <= 0 or not lease_ok:
            raise ValueError("failure_threshold must be >= 1, cooldown_s and probe_lease_s positive")

    @property
    def lease_s(self) -> float:
        return self.cooldown_s if self.probe_lease_s is None else self.probe_lease_s


@dataclass(frozen=True, slots=True)
class Circuit:
    state: State = State.CLOSED
    failures: int = 0  # consecutive failures while closed
    opened_at: float = 0.0  # when it last opened
    probe_until: float = 0.0  # half-open: the probe's lease; past it another caller may probe
    reason: str = ""  # why it last opened

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "probe_until": self.probe_until,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Circuit:
        return cls(
            State(str(raw["state"])),
            int(raw["failures"]),  # type: ignore[call-overload]
            float(raw["opened_at"]),  # type: ignore[arg-type]
            float(raw["probe_until"]),  # type: ignore[arg-type]
            str(raw["reason"]),
        )


CLOSED = Circuit()


def observed(circuit: Circuit, policy: Policy, now: float) -> State:
    """The state as a caller would find it now: an open circuit whose cooldown has passed is half-open."""
    if circuit.state is State.OPEN and now >= circuit.opened_at + policy.cooldown_s:
        return State.HALF_OPEN
    return circuit.state


def admit(circuit: Circuit, policy: Policy, now: float) -> tuple[bool, Circuit]:
    """Whether one call may go to the service now, and the circuit after the caller took the probe."""
    state = observed(circuit, policy, now)
    if state is State.CLOSED:
        return True, circuit
    if state is State.OPEN or (circuit.state is State.HALF_OPEN and now < circuit.probe_until):
        return False, circuit
    return True, replace(circuit, state=State.HALF_OPEN, probe_until=now + policy.lease_s)


def record(circuit: Circuit, outcome: Outcome, policy: Policy, now: float, reason: str = "") -> Circuit:
    """The circuit after a call ended with `outcome`."""
    if outcome is Outcome.SUCCESS:
        return CLOSED
    if outcome is Outcome.NONE:
        # No verdict: a probe without one is handed back, so the next caller may probe at once.
        return replace(circuit, probe_until=0.0) if circuit.state is State.HALF_OPEN else circuit
    failures = circuit.failures + 1
    if outcome is Outcome.FATAL or circuit.state is not State.CLOSED or failures >= policy.failure_threshold:
        return Circuit(State.OPEN, failures, opened_at=now, reason=reason)
    return replace(circuit, failures=failures)


# --- shared state -----------------------------------------------------------------------------------


class CircuitStore(Protocol):
    """Where circuits live, shared by every process. `update` is atomic: concurrent changes never interleave."""

    def read(self, service: str) -> Circuit: ...

    def update(self, service: str, change: Callable[[Circuit], tuple[T, Circuit]]) -> T:
        """Apply `change` to the current circuit atomically, store its new circuit, return its value."""
        ...


class MemoryCircuitStore:
    """One process only: for tests of the shell, and a stand-in for the shared stores."""

    def __init__(self) -> None:
        self._circuits: dict[str, Circuit] = {}
        self._lock = threading.Lock()

    def read(self, service: str) -> Circuit:
        return self._circuits.get(service, CLOSED)

    def update(self, service: str, change: Callable[[Circuit], tuple[T, Circuit]]) -> T:
        with self._lock:
            value, self._circuits[service] = change(self._circuits.get(service, CLOSED))
            return value


class CircuitBreaker:
    """The pure transitions over a shared store. Reads first and writes only on a change, because the
    hot path (every call on a closed circuit) must cost one read."""

    def __init__(
        self, store: CircuitStore, policy: Policy, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock
        # The probe leases this thread took, by service: one job may ask the router more than once before
        # its call (a cache lookup, then the metered call), and must not be refused by its own probe.
        self._held = threading.local()

    def _probes(self) -> dict[str, float]:
        if not hasattr(self._held, "leases"):
            self._held.leases = {}
        return self._held.leases

    def circuit(self, service: str) -> Circuit:
        return self.store.read(service)

    def state(self, service: str) -> State:
        return observed(self.store.read(service), self.policy, self._clock())

    def allow(self, service: str) -> bool:
        """May a call go to `service` now? On a half-open circuit this takes the one probe, if free."""
        now = self._clock()
        current = self.store.read(service)
        if current.state is State.HALF_OPEN and self._probes().get(service) == current.probe_until > now:
            return True  # the probe is ours
        allowed, after = admit(current, self.policy, now)
        if allowed and after.state is State.CLOSED:
            return True
        if not allowed:
            return False

        def take_probe(circuit: Circuit) -> tuple[Circuit | None, Circuit]:
            # Decided again under the store's atomicity: of two callers racing, one takes the probe.
            won, after = admit(circuit, self.policy, now)
            return (after if won else None), after

        taken = self.store.update(service, take_probe)
        if taken is None:
            return False
        if taken.state is State.HALF_OPEN:
            self._probes()[service] = taken.probe_until
            log.info("circuit_probe", service=service)
        return True

    def report(self, service: str, outcome: Outcome, reason: str = "") -> None:
        """Record how a call that `allow` let through ended."""
        held = self._probes().pop(service, None)
        current = self.store.read(service)
        if outcome is Outcome.SUCCESS and current == CLOSED:
            return  # the common case: nothing to write
        if outcome is Outcome.NONE and (held is None or held != current.probe_until):
            return  # no verdict, and no probe of ours to hand back
        now = self._clock()

        def apply(circuit: Circuit) -> tuple[tuple[Circuit, Circuit], Circuit]:
            after = record(circuit, outcome, self.policy, now, reason)
            return (circuit, after), after

        before, after = self.store.update(service, apply)
        if before.state is not State.OPEN and after.state is State.OPEN:
            log.warning("circuit_opened", service=service, failures=after.failures, reason=reason)
        elif before.state is not State.CLOSED and after.state is State.CLOSED:
            log.info("circuit_closed", service=service)
