"""A clock that moves only when a test says so, for the code that takes a `clock` (and a `sleep`)."""

from __future__ import annotations


class FakeClock:
    """`clock()` reads `clock.now`; `clock.sleep(seconds)` records the wait and moves the clock on by it."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
