"""Per-minute request and token windows of a stand-in, and the `x-ratelimit-*` headers that report them.

A sliding log of the last minute: a request is admitted when both its one request and its tokens fit,
else refused with the wait until they would. Thread-safe; the clock is injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0


class SlidingWindow:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._log: deque[tuple[float, int]] = deque()

    def _expire(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - WINDOW_S:
            self._log.popleft()

    def used(self, now: float) -> int:
        self._expire(now)
        return sum(units for _, units in self._log)

    def wait_for(self, units: int, now: float) -> float:
        """Seconds until `units` more fit (0.0: they fit now; a whole window if they never will)."""
        free = self.limit - self.used(now)
        if free >= units:
            return 0.0
        for stamp, old in self._log:
            free += old
            if free >= units:
                return stamp + WINDOW_S - now
        return WINDOW_S

    def reset_in(self, now: float) -> float:
        """Seconds until the window is back to its full limit."""
        self._expire(now)
        return self._log[-1][0] + WINDOW_S - now if self._log else 0.0

    def add(self, units: int, now: float) -> None:
        self._log.append((now, units))


def duration(seconds: float) -> str:
    """OpenAI's spelling of x-ratelimit-reset-*: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True, slots=True)
class Refusal:
    unit: str  # "requests" or "tokens"
    limit: int
    used: int
    requested: int
    wait_s: float  # until it would fit
    too_large: bool  # more than a whole window: it never will


class RequestTokenWindows:
    def __init__(
        self, requests_per_minute: int, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._windows = {
            "requests": SlidingWindow(requests_per_minute),
            "tokens": SlidingWindow(tokens_per_minute),
        }
        self._clock = clock
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> Refusal | None:
        """Count one request of `tokens` tokens, or say why not (counting nothing)."""
        with self._lock:
            now = self._clock()
            wanted = {"requests": 1, "tokens": tokens}
            for unit, window in self._windows.items():
                units = wanted[unit]
                wait = window.wait_for(units, now)
                if wait > 0:
                    return Refusal(unit, window.limit, window.used(now), units, wait, units > window.limit)
            for unit, window in self._windows.items():
                window.add(wanted[unit], now)
            return None

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            out: dict[str, str] = {}
            for unit, window in self._windows.items():
                out[f"x-ratelimit-limit-{unit}"] = str(window.limit)
                out[f"x-ratelimit-remaining-{unit}"] = str(max(0, window.limit - window.used(now)))
                out[f"x-ratelimit-reset-{unit}"] = duration(window.reset_in(now))
            return out
