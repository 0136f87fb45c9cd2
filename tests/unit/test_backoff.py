"""Retry policy, the shared cooldown, and the client-side rate limits. A fake clock stands in for time:
waits are recorded, never slept."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx2
import openai
import pytest
import redis
from dramatiq.rate_limits.backends import RedisBackend, StubBackend
from prometheus_client import REGISTRY

from ingest.config import Settings
from ingest.errors import IngestError
from router.backoff import (
    Cooldown,
    LocalCooldownBackend,
    RedisCooldownBackend,
    RetriesExhausted,
    RetryPolicy,
    VendorRetry,
)
from router.vendor_errors import ErrorClass
from router.vendor_limits import RateLimitWaitExceeded, VendorRateLimits
from tests.clocks import FakeClock

URL = "https://api.example.test/v1/embeddings"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _status(status: int, headers: dict | None = None, code: str | None = None) -> openai.APIStatusError:
    body = {"error": {"message": "x", "type": "t", "param": None, "code": code}}
    response = httpx2.Response(status, json=body, headers=headers, request=httpx2.Request("POST", URL))
    return openai.OpenAI(api_key="sk-test", base_url="http://localhost")._make_status_error_from_response(
        response
    )


def _script(*outcomes: object) -> tuple[Callable[[], object], list[int]]:
    """A call that raises or returns the given outcomes in turn, and the list of calls made."""
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return fn, calls


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _retry(clock: FakeClock, cooldown: Cooldown | None = None, **policy: float) -> VendorRetry:
    settings = {"max_attempts": 5, "initial_backoff_s": 0.5, "max_backoff_s": 4.0, **policy}
    cooldown = cooldown or Cooldown(LocalCooldownBackend(clock))
    return VendorRetry("openai", RetryPolicy(**settings), cooldown, sleep=clock.sleep)


def test_transient_errors_back_off_with_jitter_then_succeed(clock: FakeClock) -> None:
    fn, calls = _script(
        _status(500), _status(502), openai.APITimeoutError(request=httpx2.Request("POST", URL)), "ok"
    )
    assert _retry(clock).call(fn) == "ok"
    assert len(calls) == 4
    # Full jitter: each wait lies in [0, initial * 2**n], capped.
    assert len(clock.slept) == 3
    for n, wait in enumerate(clock.slept):
        assert 0 <= wait <= min(4.0, 0.5 * 2**n)


def test_rate_limited_waits_retry_after_and_shares_it(clock: FakeClock) -> None:
    cooldown = Cooldown(LocalCooldownBackend(clock))
    fn, calls = _script(_status(429, headers={"retry-after": "3"}), "ok")
    assert _retry(clock, cooldown).call(fn) == "ok"
    assert clock.slept == [3.0]
    assert len(calls) == 2

    # Another worker's 429: the next caller waits before its first request.
    cooldown.extend("openai", 2.0)
    fn, calls = _script("ok")
    assert _retry(clock, cooldown).call(fn) == "ok"
    assert clock.slept == [3.0, 2.0]


def test_rate_limited_without_retry_after_uses_the_default(clock: FakeClock) -> None:
    fn, _ = _script(_status(429), "ok")
    assert _retry(clock, default_retry_after_s=1.5).call(fn) == "ok"
    assert clock.slept == [1.5]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_status(401, code="invalid_api_key"), ErrorClass.FATAL_AUTH),
        (_status(429, code="insufficient_quota"), ErrorClass.FATAL_QUOTA),
        (_status(400), ErrorClass.BAD_INPUT),
        (_status(400, code="max_tokens_per_request"), ErrorClass.BAD_INPUT_TOO_LARGE),
        (ValueError("our bug"), ErrorClass.UNKNOWN),
    ],
)
def test_non_retryable_errors_raise_at_once(
    clock: FakeClock, error: BaseException, expected: ErrorClass
) -> None:
    fn, calls = _script(error, "never")
    with pytest.raises(type(error)) as raised:
        _retry(clock).call(fn)
    assert raised.value is error
    assert len(calls) == 1 and clock.slept == []


def test_attempts_are_bounded(clock: FakeClock) -> None:
    fn, calls = _script(*[_status(503)] * 10)
    with pytest.raises(RetriesExhausted) as raised:
        _retry(clock, max_attempts=3).call(fn)
    assert len(calls) == 3
    assert raised.value.error_class is ErrorClass.TRANSIENT and raised.value.attempts == 3
    # Not permanent: Dramatiq retries the message later.
    assert not isinstance(raised.value, IngestError)
    assert "HTTP 503" in str(raised.value)


def test_total_time_is_bounded(clock: FakeClock) -> None:
    # Waiting out a 120 s Retry-After would blow a 60 s budget: give up now, do not sleep.
    fn, calls = _script(_status(429, headers={"retry-after": "120"}), "never")
    with pytest.raises(RetriesExhausted) as raised:
        _retry(clock, max_elapsed_s=60).call(fn)
    assert raised.value.error_class is ErrorClass.RATE_LIMITED
    assert len(calls) == 1 and clock.slept == []


def test_a_long_foreign_cooldown_gives_up_before_calling(clock: FakeClock) -> None:
    cooldown = Cooldown(LocalCooldownBackend(clock))
    cooldown.extend("openai", 500)
    fn, calls = _script("never")
    with pytest.raises(RetriesExhausted):
        _retry(clock, cooldown, max_elapsed_s=60).call(fn)
    assert calls == [] and clock.slept == []


def test_policy_from_settings_fits_inside_the_stage_limit() -> None:
    assert RetryPolicy.from_settings(Settings(_env_file=None, job_time_limit_s=100)).max_elapsed_s == 50
    assert RetryPolicy.from_settings(Settings(_env_file=None, job_time_limit_s=6000)).max_elapsed_s == 300


def test_local_cooldown_never_shortens(clock: FakeClock) -> None:
    cooldown = Cooldown(LocalCooldownBackend(clock))
    assert cooldown.until("openai") == 0
    cooldown.extend("openai", 10)
    cooldown.extend("openai", 2)
    assert cooldown.until("openai") == 10
    assert cooldown.until("llamaparse") == 0
    clock.sleep(4)
    assert cooldown.until("openai") == 6
    assert cooldown.wait("openai", max_wait_s=5, sleep=clock.sleep) is False
    assert cooldown.wait("openai", max_wait_s=6, sleep=clock.sleep) is True
    assert cooldown.until("openai") == 0


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    namespace = f"ingest-test-{uuid.uuid4().hex[:8]}"
    client.namespace = namespace  # type: ignore[attr-defined]
    yield client
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


@pytest.mark.redis
def test_redis_cooldown_is_shared_between_instances(redis_client: redis.Redis) -> None:
    namespace = redis_client.namespace  # type: ignore[attr-defined]
    one = Cooldown(RedisCooldownBackend(redis_client), namespace=namespace)
    two = Cooldown(RedisCooldownBackend(redis.Redis.from_url(REDIS_URL)), namespace=namespace)
    one.extend("openai", 30)
    two.extend("openai", 5)  # shorter: ignored
    assert 29 < two.until("openai") <= 30
    assert redis_client.pttl(f"{namespace}:cooldown:openai") > 29_000  # expires by itself


# --- client-side rate limits -------------------------------------------------------------------------


class FakeWallClock:
    """Dramatiq's window buckets are named by time.time(); this moves them with the fake sleep."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now


@pytest.fixture
def window_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    from dramatiq.rate_limits import window

    monkeypatch.setattr(window, "time", FakeWallClock(clock))
    return clock


def _limits(
    clock: FakeClock, rpm: int, tpm: int, backend: object | None = None, **kw: float
) -> VendorRateLimits:
    return VendorRateLimits(
        rpm,
        tpm,
        backend or StubBackend(),
        key=f"t-{uuid.uuid4().hex[:6]}",
        sleep=clock.sleep,
        clock=clock,
        **kw,
    )


def test_requests_per_minute(window_time: FakeClock) -> None:
    limits = _limits(window_time, rpm=2, tpm=1_000)
    limits.acquire(1)
    limits.acquire(1)
    assert window_time.slept == []
    limits.acquire(1)  # blocks until the window slides past the first two
    assert 59 <= sum(window_time.slept) <= 61


def test_tokens_per_minute_are_charged_by_weight(window_time: FakeClock) -> None:
    limits = _limits(window_time, rpm=100, tpm=1_000)
    limits.acquire(600)
    limits.acquire(400)
    assert window_time.slept == []
    limits.acquire(1)
    assert sum(window_time.slept) >= 59
    # More than a minute's worth is charged a whole minute rather than refused forever.
    limits.acquire(5_000)


def test_the_wait_is_bounded(window_time: FakeClock) -> None:
    limits = _limits(window_time, rpm=1, tpm=1_000, max_wait_s=5)
    limits.acquire(1)
    with pytest.raises(RateLimitWaitExceeded):
        limits.acquire(1)
    assert sum(window_time.slept) == pytest.approx(5)


@pytest.mark.redis
def test_redis_limits_are_shared(redis_client: redis.Redis, clock: FakeClock) -> None:
    key = f"{redis_client.namespace}:ratelimit:openai"  # type: ignore[attr-defined]
    one = VendorRateLimits(10, 1_000, RedisBackend(client=redis_client), key=key, max_wait_s=0, clock=clock)
    two = VendorRateLimits(10, 1_000, RedisBackend(url=REDIS_URL), key=key, max_wait_s=0, clock=clock)
    one.acquire(700)
    with pytest.raises(RateLimitWaitExceeded):
        two.acquire(400)
    two.acquire(300)


def test_every_failed_attempt_is_counted_by_kind_retried_or_not(clock: FakeClock) -> None:
    def errors(kind: str) -> float:
        labels = {"service": "openai", "kind": kind}
        return REGISTRY.get_sample_value("ingest_vendor_errors_total", labels) or 0.0

    before = {kind: errors(kind) for kind in ("rate_limited", "transient", "fatal_auth")}
    fn, _ = _script(_status(429, {"retry-after": "1"}), _status(500), _status(503), "ok")
    assert _retry(clock).call(fn) == "ok"
    refused, _ = _script(_status(401))
    with pytest.raises(openai.AuthenticationError):
        _retry(clock).call(refused)
    assert errors("rate_limited") - before["rate_limited"] == 1
    assert errors("transient") - before["transient"] == 2
    assert errors("fatal_auth") - before["fatal_auth"] == 1
