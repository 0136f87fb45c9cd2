"""Per-user limits over a sliding minute: in Redis when REDIS_URL is set (shared by every API process),
else in this process's memory (right for the embedded default, where one `ingest serve` runs).

A sliding log, not a fixed window: a user never gets more than `limit` requests in any 60 seconds,
not even across a window boundary, and `Retry-After` says exactly when the oldest one ages out.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Protocol

import structlog
from fastapi import Depends

from ingest.api.auth import current_user
from ingest.api.state import ApiState, api_state
from ingest.config import Settings
from ingest.errors import RateLimited
from ingest.store.users import User

log = structlog.get_logger(__name__)

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int) -> Verdict:
        """Count one request under `key` if fewer than `limit` happened in the last minute."""
        ...


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class LocalRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int) -> Verdict:
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW_S:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                return Verdict(True)
            return Verdict(False, _retry_after(hits[0] + WINDOW_S - now))


# One atomic step per request: drop what aged out, count, add or say how long until the oldest leaves.
# The clock is Redis's own, so API processes on machines with skewed clocks agree.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + window - now
"""


class RedisRateLimiter:
    def __init__(self, url: str, *, prefix: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_SLIDING_LOG)
        self._prefix = prefix
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def hit(self, key: str, limit: int) -> Verdict:
        try:
            wait_ms = int(
                self._script(
                    keys=[f"{self._prefix}:{key}"], args=[int(WINDOW_S * 1000), limit, uuid.uuid4().hex]
                )
            )
        except self._errors as exc:
            # The limit protects capacity; losing Redis for a moment should not take the API down with it.
            log.warning("rate_limit_unavailable", error=" ".join(str(exc).split()))
            return Verdict(True)
        return Verdict(True) if wait_ms <= 0 else Verdict(False, _retry_after(wait_ms / 1000))


def build_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, prefix=f"{settings.broker_namespace}:ratelimit")
    return LocalRateLimiter()


def enforce(limiter: RateLimiter, *, action: str, user_id: int, limit: int) -> None:
    """Raise RateLimited (429 with Retry-After) when the user is over `limit` per minute for `action`."""
    verdict = limiter.hit(f"{action}:{user_id}", limit)
    if not verdict.allowed:
        raise RateLimited(
            f"too many {action} requests: the limit is {limit} per minute; retry in {verdict.retry_after_s} s",
            verdict.retry_after_s,
        )


def upload_quota(
    state: Annotated[ApiState, Depends(api_state)], user: Annotated[User, Depends(current_user)]
) -> User:
    """The user, once this upload is counted against INGEST_UPLOADS_PER_MINUTE (before any byte is read)."""
    enforce(state.limiter, action="upload", user_id=user.id, limit=state.rt.settings.uploads_per_minute)
    return user


def search_quota(
    state: Annotated[ApiState, Depends(api_state)], user: Annotated[User, Depends(current_user)]
) -> User:
    enforce(state.limiter, action="search", user_id=user.id, limit=state.rt.settings.searches_per_minute)
    return user


UploadingUser = Annotated[User, Depends(upload_quota)]
SearchingUser = Annotated[User, Depends(search_quota)]
