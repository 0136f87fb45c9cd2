"""Fixtures of the production tests: the shared Redis under a namespace of this test, the environment of
`ingest` worker processes tuned to recover in seconds, and the vendor stand-ins on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from integration.standins_support import point_real_clients_at, serving
from production_support import PrivateRedis

from mocks import server
from mocks.faults import FaultPlan

SHARED_REDIS = "redis://127.0.0.1:6379/0"

# Seconds instead of minutes, so each fault heals within a test's patience. docs/operations.md has the
# production values and why they differ.
FAST_RECOVERY = {
    "INGEST_BROKER_HEARTBEAT_TIMEOUT_S": "3",
    "INGEST_BROKER_MAINTENANCE_CHANCE": "200000",
    "INGEST_SWEEP_INTERVAL_S": "1",
    "INGEST_JOB_TIME_LIMIT_S": "20",
    "INGEST_REQUEUE_IDLE_S": "600",  # tests of lost messages lower it; the others prove the broker's recovery
    "INGEST_LOG_FORMAT": "json",
}


@pytest.fixture
def shared_redis() -> redis.Redis:
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    return client


@pytest.fixture
def worker_env(ingest_env: dict[str, str], shared_redis: redis.Redis) -> Iterator[Callable[..., dict[str, str]]]:
    """Makes the environment of `ingest` processes of this test: its database, the shared Redis under a
    namespace of its own (deleted after), fast recovery, and `extra` INGEST_* settings. It copies
    os.environ when called, so the stand-ins' variables are in it."""
    namespace = f"ingest-prod-{uuid.uuid4().hex[:8]}"

    def make(**extra: str) -> dict[str, str]:
        settings = {f"INGEST_{name}": value for name, value in extra.items()}
        return {
            **os.environ,
            **ingest_env,
            **FAST_RECOVERY,
            "REDIS_URL": SHARED_REDIS,
            "INGEST_BROKER_NAMESPACE": namespace,
            **settings,
        }

    yield make
    for key in shared_redis.scan_iter(f"{namespace}*"):
        shared_redis.delete(key)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    instance = PrivateRedis(folder)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def standins(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Both vendor stand-ins on a loopback port, with the real clients' variables pointing at them. Tests
    change `app.state.openai.state.injector.plan` (or LlamaParse's `state.plan`) to inject latency or faults."""
    for name in list(os.environ):
        if name.startswith("MOCKS_"):
            monkeypatch.delenv(name)
    app = server.create_app(FaultPlan())
    with serving(app) as base:
        point_real_clients_at(monkeypatch, base)
        yield app
