"""The circuit's shared stores: what one process's breaker records, another's sees; of many callers racing for
a half-open circuit's probe through separate stores (separate connections), exactly one wins."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from ingest.db.pool import open_pool
from router.backends.postgres_circuits import PostgresCircuitStore
from router.backends.redis_circuits import RedisCircuitStore
from router.circuit import CLOSED, CircuitBreaker, CircuitStore, Outcome, Policy, State
from tests.clocks import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"
POLICY = Policy(failure_threshold=2, cooldown_s=10.0)


@pytest.fixture
def redis_stores() -> Iterator[Callable[[], CircuitStore]]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    namespace = f"ingest-test-{uuid.uuid4().hex[:8]}"
    clients: list[redis.Redis] = []

    def new_store() -> CircuitStore:
        clients.append(redis.Redis.from_url(REDIS_URL))  # one client each, as separate processes have
        return RedisCircuitStore(clients[-1], namespace=namespace)

    yield new_store
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    for c in [client, *clients]:
        c.close()


@pytest.fixture
def postgres_stores(database_url: str) -> Iterator[Callable[[], CircuitStore]]:
    pools = []

    def new_store() -> CircuitStore:
        pools.append(open_pool(database_url, max_size=4))  # one pool each, as separate processes have
        return PostgresCircuitStore(pools[-1])

    yield new_store
    for pool in pools:
        pool.close()


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "postgres"])
def stores(request: pytest.FixtureRequest) -> Callable[[], CircuitStore]:
    return request.getfixturevalue(f"{request.param}_stores")


def test_a_circuit_opened_by_one_process_is_open_for_another(stores: Callable[[], CircuitStore]) -> None:
    clock = FakeClock()
    one, other = (CircuitBreaker(stores(), POLICY, clock=clock) for _ in range(2))
    assert other.circuit("openai") == CLOSED  # nothing stored yet reads as closed

    one.report("openai", Outcome.FAILURE, "HTTP 500")
    other.report("openai", Outcome.FAILURE, "HTTP 502")  # failures count across processes
    circuit = one.circuit("openai")
    assert (circuit.state, circuit.failures, circuit.reason) == (State.OPEN, 2, "HTTP 502")
    assert not other.allow("openai")
    assert other.circuit("llamaparse") == CLOSED

    clock.now += POLICY.cooldown_s
    assert other.allow("openai")  # the probe
    assert one.state("openai") is State.HALF_OPEN and not one.allow("openai")
    other.report("openai", Outcome.SUCCESS)
    assert one.circuit("openai") == CLOSED and one.allow("openai")


def test_auth_errors_open_it_for_everyone_at_once(stores: Callable[[], CircuitStore]) -> None:
    one, other = (CircuitBreaker(stores(), POLICY, clock=FakeClock()) for _ in range(2))
    one.report("llamaparse", Outcome.FATAL, "llamaparse: the API key was refused (HTTP 401)")
    assert not other.allow("llamaparse")
    assert "API key was refused" in other.circuit("llamaparse").reason


def test_exactly_one_of_many_processes_takes_the_probe(stores: Callable[[], CircuitStore]) -> None:
    clock = FakeClock()
    breakers = [CircuitBreaker(stores(), POLICY, clock=clock) for _ in range(6)]
    breakers[0].report("openai", Outcome.FATAL, "quota")
    clock.now += POLICY.cooldown_s
    start = threading.Barrier(len(breakers))
    answers: list[bool] = []

    def caller(breaker: CircuitBreaker) -> None:
        start.wait()
        answers.append(breaker.allow("openai"))

    threads = [threading.Thread(target=caller, args=(b,)) for b in breakers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [False] * (len(breakers) - 1) + [True]
