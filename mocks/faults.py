"""Fault injection for the vendor stand-ins: latency, 429s, 500s, hangs, malformed bodies, spent quota.

A `FaultPlan` says how often each fault happens. It comes from the environment (`MOCKS_RATE_429=0.2`)
and a single request can override it with the header `X-Mock-Faults: rate_429=0.3,rate_500=0.1,seed=7`.

Decisions are reproducible: the n-th request under a key (a route, say) draws the same number for
the same seed in every run, from a counter-based generator (blake2b of seed, key and n) rather than
a shared `random.Random`, whose sequence would depend on how requests of other keys interleave.

`decide` is pure bookkeeping; `apply` is the thin ASGI part that sleeps and builds the response.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from starlette.responses import JSONResponse, Response

FAULT_HEADER = "x-mock-faults"


class FaultKind(Enum):
    RATE_LIMIT = "rate_429"
    SERVER_ERROR = "rate_500"
    TIMEOUT = "rate_timeout"
    MALFORMED = "rate_malformed"
    QUOTA = "rate_quota"  # the account is out of credit: each vendor answers it in its own shape


@dataclass(frozen=True, slots=True)
class FaultPlan:
    latency_ms: int = 0
    rate_429: float = 0
    rate_500: float = 0
    rate_timeout: float = 0
    rate_malformed: float = 0
    rate_quota: float = 0
    retry_after_s: float = 1
    timeout_s: float = 30
    seed: int = 0

    def __post_init__(self) -> None:
        rates = [getattr(self, kind.value) for kind in FaultKind]
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1 + 1e-9:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if self.latency_ms < 0 or self.retry_after_s < 0 or self.timeout_s < 0:
            raise ValueError("latency_ms, retry_after_s and timeout_s must not be negative")

    @classmethod
    def from_env(cls, prefix: str = "MOCKS_", environ: Mapping[str, str] | None = None) -> FaultPlan:
        """`MOCKS_LATENCY_MS`, `MOCKS_RATE_429`, ... `MOCKS_SEED`; unset names keep their defaults."""
        env = os.environ if environ is None else environ
        values = {f.name: env[prefix + f.name.upper()] for f in fields(cls) if prefix + f.name.upper() in env}
        return cls._coerced(cls(), values)

    def merged_with_headers(self, headers: Mapping[str, str]) -> FaultPlan:
        """This plan overridden by the request's `X-Mock-Faults` header (ValueError when malformed)."""
        raw = next((value for name, value in headers.items() if name.lower() == FAULT_HEADER), None)
        if not raw or not raw.strip():
            return self
        values: dict[str, str] = {}
        for item in raw.split(","):
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"X-Mock-Faults: expected name=value, got {item.strip()!r}")
            values[name.strip()] = value.strip()
        return self._coerced(self, values)

    @staticmethod
    def _coerced(base: FaultPlan, values: Mapping[str, str]) -> FaultPlan:
        types = {f.name: f.type for f in fields(FaultPlan)}
        unknown = set(values) - set(types)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        # Annotations are strings under `from __future__ import annotations`.
        parsed: dict[str, Any] = {
            name: int(v) if types[name] == "int" else float(v) for name, v in values.items()
        }
        return replace(base, **parsed)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request: wait `latency_s`, then fail as `kind` (None: answer normally)."""

    kind: FaultKind | None
    latency_s: float = 0.0
    retry_after_s: float = 1.0
    timeout_s: float = 30.0


def draw(seed: int, key: str, n: int) -> float:
    """The n-th uniform number in [0, 1) of the stream (seed, key): a pure, stable function."""
    digest = hashlib.blake2b(f"{seed}\x00{key}\x00{n}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 11) / float(1 << 53)


def choose(plan: FaultPlan, u: float) -> FaultKind | None:
    """The fault whose slice of [0, 1) holds u; slices follow FaultKind order, sized by their rates."""
    edge = 0.0
    for kind in FaultKind:
        edge += getattr(plan, kind.value)
        if u < edge:
            return kind
    return None


@dataclass(slots=True)
class FaultStats:
    served: int = 0  # requests let through to the real handler
    failed: int = 0  # requests answered with an injected fault
    by_kind: Counter[str] = field(default_factory=Counter)


class FaultInjector:
    """Per-key counters over a plan; thread-safe (the app and a test may read `stats` concurrently)."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._counters: Counter[tuple[int, str]] = Counter()
        self._stats = FaultStats()
        self._lock = threading.Lock()

    def decide(self, key: str, plan: FaultPlan | None = None) -> Fault | None:
        """The fault for the next request under `key` (None: no latency, no failure)."""
        plan = plan or self.plan
        with self._lock:
            n = self._counters[(plan.seed, key)]
            self._counters[(plan.seed, key)] = n + 1
            kind = choose(plan, draw(plan.seed, key, n))
            if kind is None:
                self._stats.served += 1
            else:
                self._stats.failed += 1
                self._stats.by_kind[kind.value] += 1
        if kind is None and plan.latency_ms == 0:
            return None
        return Fault(kind, plan.latency_ms / 1000, plan.retry_after_s, plan.timeout_s)

    @property
    def stats(self) -> FaultStats:
        with self._lock:
            return FaultStats(self._stats.served, self._stats.failed, Counter(self._stats.by_kind))

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._stats = FaultStats()


# A vendor's way of saying each failure: (HTTP status, JSON body). MALFORMED needs none.
ErrorRenderer = Callable[[FaultKind], tuple[int, dict[str, object]]]

_GENERIC: dict[FaultKind, tuple[int, str]] = {
    FaultKind.RATE_LIMIT: (429, "Too many requests (injected fault)"),
    FaultKind.SERVER_ERROR: (500, "Internal server error (injected fault)"),
    FaultKind.TIMEOUT: (504, "Gateway timeout (injected fault)"),
    FaultKind.QUOTA: (402, "Payment required: out of credits (injected fault)"),
}


def generic_error(kind: FaultKind) -> tuple[int, dict[str, object]]:
    status, message = _GENERIC[kind]
    return status, {"detail": message}


# Cut off mid-object, as a dropped connection behind a proxy would leave it.
MALFORMED_BODY = b'{"object": "list", "data": [{"object": "embedding", "index": 0, "embedd'


async def apply(fault: Fault | None, render: ErrorRenderer = generic_error) -> Response | None:
    """Sleep the fault's latency, then the response that stands for its failure (None: carry on)."""
    if fault is None:
        return None
    if fault.latency_s:
        await asyncio.sleep(fault.latency_s)
    if fault.kind is None:
        return None
    if fault.kind is FaultKind.MALFORMED:
        return Response(MALFORMED_BODY, status_code=200, media_type="application/json")
    if fault.kind is FaultKind.TIMEOUT:
        # Hang past any sane client timeout; whoever still listens afterwards gets a gateway timeout.
        await asyncio.sleep(fault.timeout_s)
    status, body = render(fault.kind)
    headers = {}
    if status == 429 and fault.kind is FaultKind.RATE_LIMIT:
        # Retry-After is whole seconds by RFC 9110; retry-after-ms (which the Stainless SDKs read first)
        # carries sub-second waits so tests can run fast.
        headers["retry-after"] = str(max(1, math.ceil(fault.retry_after_s)))
        headers["retry-after-ms"] = str(round(fault.retry_after_s * 1000))
    return JSONResponse(body, status_code=status, headers=headers)
