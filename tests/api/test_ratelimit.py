"""The per-user sliding minute: in process, and shared through Redis by every API process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from ingest.api.request_limits import LocalRateLimiter, RedisRateLimiter, Verdict
from tests.clocks import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_local_limit_slides_instead_of_resetting_on_a_boundary() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock)
    for _ in range(3):  # at 1000, 1010 and 1020
        assert limiter.hit("upload:1", 3).allowed
        clock.now += 10
    assert limiter.hit("upload:1", 3) == Verdict(False, 30)  # the first leaves 60 s after it came
    assert limiter.hit("upload:2", 3).allowed  # another user, another count
    clock.now = 1060
    assert limiter.hit("upload:1", 3).allowed  # the first has left
    assert limiter.hit("upload:1", 3) == Verdict(False, 10)  # the second leaves at 1070


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    prefix = f"ingest-test-{uuid.uuid4().hex[:8]}:ratelimit"
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


@pytest.mark.redis
def test_processes_share_one_limit_through_redis(redis_prefix: str) -> None:
    first, second = (RedisRateLimiter(REDIS_URL, prefix=redis_prefix) for _ in range(2))  # two API processes
    verdicts = [limiter.hit("search:7", 4) for limiter in (first, second, first, second, first, second)]
    assert [v.allowed for v in verdicts] == [True, True, True, True, False, False]
    assert all(1 <= v.retry_after_s <= 60 for v in verdicts[4:])
    assert first.hit("search:8", 4).allowed  # per user


def test_an_unreachable_redis_lets_requests_through() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", prefix="nowhere")
    assert limiter.hit("upload:1", 1).allowed
