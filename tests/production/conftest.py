"""Fixtures of the production tests: the environment of `ingest` worker processes on the shared Redis
(under a namespace of this test) tuned to recover in seconds, and a private redis-server. The shared Redis,
the namespace and the vendor stand-ins are tests/conftest.py's."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from production_support import PrivateRedis

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
def worker_env(ingest_env: dict[str, str], redis_namespace: str) -> Callable[..., dict[str, str]]:
    """Makes the environment of `ingest` processes of this test: its database, the shared Redis under a
    namespace of its own (deleted after), fast recovery, and `extra` INGEST_* settings. It copies
    os.environ when called, so the stand-ins' variables are in it."""

    def make(**extra: str) -> dict[str, str]:
        settings = {f"INGEST_{name}": value for name, value in extra.items()}
        return {
            **os.environ,
            **ingest_env,
            **FAST_RECOVERY,
            "REDIS_URL": SHARED_REDIS,
            "INGEST_BROKER_NAMESPACE": redis_namespace,
            **settings,
        }

    return make


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    instance = PrivateRedis(folder)
    instance.start()
    yield instance
    instance.stop()
