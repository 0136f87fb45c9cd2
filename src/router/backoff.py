"""Retrying vendor calls: how long to wait, when to stop, and a cooldown every worker honours.

The SDKs' own retries are switched off (`max_retries=0`) and replaced by `VendorRetry`, for two reasons:
a 429 seen by one worker must slow down every worker (the SDK only sleeps the thread that saw it), and
our failures must be classified the same way for both vendors (`router.vendor_errors`).

- TRANSIENT (5xx, timeouts, dropped connections, malformed bodies): exponential backoff, full jitter.
- RATE_LIMITED (429): the service's shared `Cooldown` is extended by Retry-After, then every caller
  (in this process or, with Redis, in any process) waits it out before its next request.
- Anything else is raised at once: a bad key, an empty account or a rejected input never improve.

Attempts and total time are both bounded. A call that runs out of either raises `RetriesExhausted`,
which is deliberately *not* an `IngestError`: Dramatiq then retries the whole message later, with its
own longer backoff, while VendorError (permanent) ends the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog
import tenacity

from router.metrics import VENDOR_ERRORS
from router.vendor_errors import RETRYABLE, ErrorClass, classify, describe, retry_after_seconds, status_of

if TYPE_CHECKING:
    import redis

    from ingest.config import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

_MAX_ELAPSED_S = 300.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    max_elapsed_s: float = _MAX_ELAPSED_S  # from the first attempt, sleeps included
    initial_backoff_s: float = 1.0  # the window of the first jittered wait; it doubles each retry
    max_backoff_s: float = 30.0
    default_retry_after_s: float = 5.0  # a 429 that does not say how long to wait
    timeout_s: float = 60.0  # each request

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or min(self.max_elapsed_s, self.timeout_s) <= 0:
            raise ValueError("max_attempts must be >= 1, max_elapsed_s and timeout_s positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        # Retrying must end well inside one stage's hard limit, or Dramatiq kills the stage mid-wait.
        return cls(
            max_attempts=settings.vendor_max_attempts,
            max_elapsed_s=min(settings.vendor_max_retry_s, settings.job_time_limit_s / 2),
            initial_backoff_s=settings.vendor_initial_backoff_s,
            max_backoff_s=settings.vendor_max_backoff_s,
            timeout_s=settings.vendor_timeout_s,
        )


class RetriesExhausted(Exception):
    """A retryable failure that outlasted the policy. Not permanent: the message is retried later."""

    def __init__(self, service: str, error_class: ErrorClass, attempts: int, detail: str) -> None:
        super().__init__(f"{service}: gave up after {attempts} attempt(s) ({error_class.value}): {detail}")
        self.service = service
        self.error_class = error_class
        self.attempts = attempts


# --- cooldown ---------------------------------------------------------------------------------------


class CooldownBackend(Protocol):
    def remaining_ms(self, key: str) -> int: ...

    def extend_ms(self, key: str, ms: int) -> None:
        """Make the cooldown last at least `ms` from now (never shorten it)."""
        ...


class LocalCooldownBackend:
    """This process only: the embedded default, where every worker thread shares one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def remaining_ms(self, key: str) -> int:
        with self._lock:
            return max(0, round((self._until.get(key, 0.0) - self._clock()) * 1000))

    def extend_ms(self, key: str, ms: int) -> None:
        with self._lock:
            self._until[key] = max(self._until.get(key, 0.0), self._clock() + ms / 1000)


# PTTL is -2 for a missing key: any positive wait replaces it. Atomic, so two workers extending at once
# keep the longer wait.
_EXTEND = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


class RedisCooldownBackend:
    """Shared by every process on every machine: one key per service, expiring (PX) when the wait ends."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._extend = client.register_script(_EXTEND)

    def remaining_ms(self, key: str) -> int:
        return max(0, int(self._client.pttl(key)))

    def extend_ms(self, key: str, ms: int) -> None:
        self._extend(keys=[key], args=[ms])


# Every client of this process shares one table, so a 429 seen by one slows all of them.
_PROCESS_COOLDOWNS = LocalCooldownBackend()


class Cooldown:
    """How long each service asked us to stay away, shared across workers."""

    def __init__(self, backend: CooldownBackend | None = None, *, namespace: str = "ingest") -> None:
        self._backend = backend or _PROCESS_COOLDOWNS
        self._namespace = namespace

    @classmethod
    def from_settings(cls, settings: Settings) -> Cooldown:
        if settings.redis_url:
            import redis

            client = redis.Redis.from_url(settings.redis_url)
            return cls(RedisCooldownBackend(client), namespace=settings.broker_namespace)
        return cls(namespace=settings.broker_namespace)

    def _key(self, service: str) -> str:
        return f"{self._namespace}:cooldown:{service}"

    def until(self, service: str) -> float:
        """Seconds from now until `service` may be called again (0.0: now)."""
        return self._backend.remaining_ms(self._key(service)) / 1000

    def extend(self, service: str, seconds: float) -> None:
        if seconds > 0:
            self._backend.extend_ms(self._key(service), max(1, round(seconds * 1000)))

    def wait(self, service: str, *, max_wait_s: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Sleep until the cooldown has passed (True), or give up once max_wait_s is spent (False)."""
        waited = 0.0
        while (remaining := self.until(service)) > 0:
            if waited + remaining > max_wait_s:
                return False
            sleep(remaining)
            waited += remaining  # another worker may extend it meanwhile: look again
        return True


# --- the retry loop ---------------------------------------------------------------------------------


class VendorRetry:
    """Calls `fn` under the policy; one instance per client, safe to share between threads."""

    def __init__(
        self,
        service: str,
        policy: RetryPolicy,
        cooldown: Cooldown,
        *,
        sleep: Callable[[float], None] = time.sleep,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.service = service
        self.policy = policy
        self.cooldown = cooldown
        self._sleep = sleep
        self._secrets = secrets
        self._jitter = tenacity.wait_random_exponential(
            multiplier=policy.initial_backoff_s, max=policy.max_backoff_s
        )

    def call(self, fn: Callable[[], T]) -> T:
        """fn's result; its exception at once when not retryable; RetriesExhausted when out of budget."""

        def attempt() -> T:
            try:
                return fn()
            except Exception as exc:
                VENDOR_ERRORS.labels(self.service, classify(exc).value).inc()
                raise

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: classify(exc) in RETRYABLE),
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_before_delay(self.policy.max_elapsed_s),
            wait=self._wait,
            before=self._before_attempt,
            after=self._after_failure,
            before_sleep=self._log_retry,
            sleep=self._sleep,
        )
        try:
            return retrying(attempt)
        except tenacity.RetryError as err:
            last = err.last_attempt.exception()
            assert last is not None  # only failed attempts are retried
            raise RetriesExhausted(
                self.service, classify(last), err.last_attempt.attempt_number, describe(last, self._secrets)
            ) from last

    def _before_attempt(self, state: tenacity.RetryCallState) -> None:
        # Another worker's 429 counts as ours: wait it out, within what is left of the time budget.
        left = self.policy.max_elapsed_s - (time.monotonic() - state.start_time)
        if not self.cooldown.wait(self.service, max_wait_s=max(0.0, left), sleep=self._sleep):
            raise RetriesExhausted(
                self.service,
                ErrorClass.RATE_LIMITED,
                state.attempt_number - 1,
                f"cooling down for another {self.cooldown.until(self.service):.1f}s",
            )

    def _after_failure(self, state: tenacity.RetryCallState) -> None:
        exc = _failure(state)
        if classify(exc) is ErrorClass.RATE_LIMITED:
            wait = retry_after_seconds(exc)
            self.cooldown.extend(self.service, self.policy.default_retry_after_s if wait is None else wait)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        if classify(_failure(state)) is ErrorClass.RATE_LIMITED:
            return self.cooldown.until(self.service)
        return self._jitter(state)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = _failure(state)
        log.warning(
            "vendor_retry",
            service=self.service,
            error_class=classify(exc).value,
            status=status_of(exc),
            attempt=state.attempt_number,
            sleep_s=round(state.upcoming_sleep, 3),
        )


def _failure(state: tenacity.RetryCallState) -> BaseException:
    assert state.outcome is not None
    exc = state.outcome.exception()
    assert exc is not None  # `retry` only accepts failures
    return exc
