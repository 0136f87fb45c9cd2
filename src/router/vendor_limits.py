"""Client-side vendor limits (requests and tokens per minute) on Dramatiq's sliding-window limiters.

Staying under the vendor's limits is cheaper than bouncing off them: a 429 costs a round trip and a
cooldown for everyone. The windows live in Redis when `REDIS_URL` is set (every worker process on every
machine draws from the same budget), else in this process's memory (`StubBackend`: an in-memory,
thread-safe backend; all the embedded default's workers are threads of one process).

Dramatiq's `WindowRateLimiter` counts one unit per `acquire()`: right for requests, useless for tokens
(a loop of 100,000 single-unit acquisitions would be 100,000 Redis round trips, and could stop halfway
holding a partial grant). So tokens use the same window and the same backend primitive, weighted:
`backend.incr_and_sum(current_bucket, all_buckets, amount, maximum, ttl)`, one atomic step whatever the
amount. A request takes its request slot first and then waits for its tokens; a slot once taken is
spent (a window limiter has no release), which can only make us slower than the vendor's limit, never
faster. A request asking for more tokens than a whole minute allows is charged the whole minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backend import RateLimiterBackend
from dramatiq.rate_limits.backends import StubBackend

if TYPE_CHECKING:
    from ingest.config import Settings

WINDOW_S = 60

# One table per process, so every client of a service in this process shares its budget.
_PROCESS_BACKEND = StubBackend()


def rate_limit_backend(settings: Settings) -> RateLimiterBackend:
    if settings.redis_url:
        from dramatiq.rate_limits.backends import RedisBackend

        return RedisBackend(url=settings.redis_url)
    return _PROCESS_BACKEND


class RateLimitWaitExceeded(Exception):
    """The client-side limit did not free up within max_wait_s. Not permanent: the message is retried."""


class _WeightedWindowRateLimiter(WindowRateLimiter):
    """Dramatiq's sliding window, charging `amount` units in one atomic step instead of one."""

    def try_acquire(self, amount: int) -> bool:
        keys = self._get_keys()
        return bool(
            self.backend.incr_and_sum(
                keys[0], self._get_keys, amount, maximum=self.limit, ttl=self.window_millis
            )
        )


class VendorRateLimits:
    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        backend: RateLimiterBackend,
        *,
        key: str = "ingest:ratelimit:openai",
        max_wait_s: float = 120.0,
        poll_s: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 1 or tokens_per_minute < 1:
            raise ValueError("limits must be positive")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._requests = WindowRateLimiter(
            backend, f"{key}:requests", limit=requests_per_minute, window=WINDOW_S
        )
        self._tokens = _WeightedWindowRateLimiter(
            backend, f"{key}:tokens", limit=tokens_per_minute, window=WINDOW_S
        )
        self._max_wait_s = max_wait_s
        # The windows have one-second buckets: polling much faster than that only adds load.
        self._poll_s = poll_s
        self._sleep = sleep
        self._clock = clock

    def acquire(self, tokens: int) -> None:
        """Block until one request of `tokens` tokens fits both limits; RateLimitWaitExceeded after max_wait_s."""
        deadline = self._clock() + self._max_wait_s
        while not self._take_request_slot():
            self._pause(deadline, "requests")
        amount = min(max(tokens, 0), self.tokens_per_minute)
        while amount and not self._tokens.try_acquire(amount):
            self._pause(deadline, "tokens")

    def _take_request_slot(self) -> bool:
        with self._requests.acquire(raise_on_failure=False) as acquired:
            return bool(acquired)

    def _pause(self, deadline: float, what: str) -> None:
        left = deadline - self._clock()
        if left <= 0:
            raise RateLimitWaitExceeded(
                f"client-side {what} per minute limit still reached after {self._max_wait_s:g}s"
            )
        self._sleep(min(self._poll_s, left))
