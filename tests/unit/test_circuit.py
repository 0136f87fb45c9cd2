"""The circuit breaker: the pure state machine over a fake clock, the one probe of a half-open circuit, and
what each kind of failed call says about a service."""

from __future__ import annotations

import threading

import pytest

from ingest.errors import EmptyDocument, VendorError
from router.backoff import RetriesExhausted
from router.circuit import (
    CLOSED,
    Circuit,
    CircuitBreaker,
    MemoryCircuitStore,
    Outcome,
    Policy,
    State,
    admit,
    observed,
    record,
)
from router.guarded import GuardedEmbedder, outcome_of
from router.vendor_errors import ErrorClass
from tests.clocks import FakeClock

POLICY = Policy(failure_threshold=3, cooldown_s=10.0)


# --- the pure state machine -------------------------------------------------------------------------


def test_opens_after_threshold_failures_in_a_row() -> None:
    c = CLOSED
    for n in range(1, 3):
        c = record(c, Outcome.FAILURE, POLICY, now=1.0, reason="HTTP 500")
        assert (c.state, c.failures) == (State.CLOSED, n)
    c = record(c, Outcome.FAILURE, POLICY, now=2.0, reason="HTTP 503")
    assert (c.state, c.opened_at, c.reason) == (State.OPEN, 2.0, "HTTP 503")


def test_a_success_resets_the_count() -> None:
    c = record(record(CLOSED, Outcome.FAILURE, POLICY, 1.0), Outcome.FAILURE, POLICY, 1.0)
    c = record(c, Outcome.SUCCESS, POLICY, 2.0)
    assert c == CLOSED
    c = record(record(c, Outcome.FAILURE, POLICY, 3.0), Outcome.FAILURE, POLICY, 3.0)
    assert c.state is State.CLOSED


def test_auth_and_quota_open_it_at_once() -> None:
    c = record(CLOSED, Outcome.FATAL, POLICY, now=5.0, reason="key refused")
    assert (c.state, c.opened_at) == (State.OPEN, 5.0)


def test_open_refuses_until_the_cooldown_then_lets_one_probe_through() -> None:
    c = record(CLOSED, Outcome.FATAL, POLICY, now=0.0)
    assert admit(c, POLICY, now=9.99) == (False, c)
    assert observed(c, POLICY, now=9.99) is State.OPEN
    assert observed(c, POLICY, now=10.0) is State.HALF_OPEN

    allowed, probing = admit(c, POLICY, now=10.0)
    assert allowed and probing.state is State.HALF_OPEN
    assert admit(probing, POLICY, now=10.5)[0] is False  # only one probe at a time


def test_the_probe_closes_or_reopens() -> None:
    _, probing = admit(record(CLOSED, Outcome.FATAL, POLICY, now=0.0), POLICY, now=10.0)
    assert record(probing, Outcome.SUCCESS, POLICY, now=11.0) == CLOSED
    reopened = record(probing, Outcome.FAILURE, POLICY, now=11.0, reason="still down")
    assert (reopened.state, reopened.opened_at) == (State.OPEN, 11.0)  # a whole new cooldown
    assert admit(reopened, POLICY, now=20.0)[0] is False


def test_a_lost_probe_is_given_up_after_its_lease() -> None:
    _, probing = admit(record(CLOSED, Outcome.FATAL, POLICY, now=0.0), POLICY, now=10.0)
    assert admit(probing, POLICY, now=10.0 + POLICY.lease_s - 0.01)[0] is False
    assert admit(probing, POLICY, now=10.0 + POLICY.lease_s)[0] is True


def test_no_verdict_hands_the_probe_back() -> None:
    _, probing = admit(record(CLOSED, Outcome.FATAL, POLICY, now=0.0), POLICY, now=10.0)
    handed_back = record(probing, Outcome.NONE, POLICY, now=10.5)
    assert handed_back.state is State.HALF_OPEN
    assert admit(handed_back, POLICY, now=10.6)[0] is True
    assert record(CLOSED, Outcome.NONE, POLICY, now=1.0) == CLOSED


def test_circuit_round_trips_as_data() -> None:
    c = Circuit(State.HALF_OPEN, 4, 12.5, 22.5, "HTTP 500")
    assert Circuit.from_dict(c.as_dict()) == c


@pytest.mark.parametrize("bad", [{"failure_threshold": 0}, {"cooldown_s": 0}, {"probe_lease_s": 0}])
def test_policy_refuses_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Policy(**bad)  # type: ignore[arg-type]


# --- the shell ------------------------------------------------------------------------------------


def test_breaker_probe_is_exclusive_across_threads() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(MemoryCircuitStore(), POLICY, clock=clock)
    breaker.report("openai", Outcome.FATAL, "key refused")
    assert not breaker.allow("openai")
    clock.now += POLICY.cooldown_s

    start = threading.Barrier(8)
    answers: list[bool] = []

    def caller() -> None:
        start.wait()
        answers.append(breaker.allow("openai"))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * 7 + [True]
    assert breaker.state("openai") is State.HALF_OPEN


def test_the_prober_may_ask_again_before_its_call() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(MemoryCircuitStore(), POLICY, clock=clock)
    breaker.report("openai", Outcome.FATAL)
    clock.now += POLICY.cooldown_s
    assert breaker.allow("openai")
    assert breaker.allow("openai")  # the same thread holds the probe: a second look is not refused

    others: list[bool] = []
    t = threading.Thread(target=lambda: others.append(breaker.allow("openai")))
    t.start()
    t.join()
    assert others == [False]

    breaker.report("openai", Outcome.SUCCESS)
    assert breaker.state("openai") is State.CLOSED
    assert breaker.circuit("llamaparse") == CLOSED  # services are apart


def test_no_verdict_from_another_caller_keeps_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(MemoryCircuitStore(), POLICY, clock=clock)
    breaker.report("openai", Outcome.FATAL)
    clock.now += POLICY.cooldown_s
    assert breaker.allow("openai")
    answers: list[bool] = []

    def another_caller() -> None:
        breaker.report("openai", Outcome.NONE)  # a call of its own ended without a verdict
        answers.append(breaker.allow("openai"))

    t = threading.Thread(target=another_caller)
    t.start()
    t.join()
    assert answers == [False]  # the probe is still ours


# --- what a failed call says ----------------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


def _vendor_error_from(status: int) -> VendorError:
    try:
        try:
            raise _HttpError(status)
        except _HttpError:
            raise VendorError(f"refused ({status})") from None  # as the real clients raise it
    except VendorError as err:
        return err


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (RetriesExhausted("openai", ErrorClass.TRANSIENT, 6, "HTTP 500"), Outcome.FAILURE),
        (RetriesExhausted("openai", ErrorClass.RATE_LIMITED, 6, "HTTP 429"), Outcome.SUCCESS),
        (_vendor_error_from(401), Outcome.FATAL),
        (_vendor_error_from(402), Outcome.FATAL),
        (_vendor_error_from(400), Outcome.SUCCESS),
        (EmptyDocument("no text"), Outcome.SUCCESS),
        (RuntimeError("a bug of ours"), Outcome.NONE),
    ],
    ids=["retries-spent", "rate-limited", "auth", "quota", "bad-input", "empty", "bug"],
)
def test_outcome_of(exc: BaseException, outcome: Outcome) -> None:
    assert outcome_of(exc) is outcome


def test_guarded_client_reports_each_call() -> None:
    class Failing:
        model, dimensions = "m", 4

        def embed(self, texts: object) -> object:
            raise RetriesExhausted("openai", ErrorClass.TRANSIENT, 2, "HTTP 503")

    breaker = CircuitBreaker(
        MemoryCircuitStore(), Policy(failure_threshold=2, cooldown_s=5), clock=FakeClock()
    )
    guarded = GuardedEmbedder(Failing(), "openai", breaker)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(RetriesExhausted):
            guarded.embed(["a"])
    circuit = breaker.circuit("openai")
    assert circuit.state is State.OPEN and "HTTP 503" in circuit.reason
