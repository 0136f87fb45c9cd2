"""Thin wrappers the router puts around clients.

- `GuardedParser` / `GuardedEmbedder` wrap a real client: every call's outcome goes to the service's
  circuit breaker. Which outcome an exception means is `outcome_of`, a pure function.
- `StandInEmbedder` wraps the mock embedder when it serves in place of the real one (hybrid): it makes
  the same vectors in the same (mock) space, and says so with `awaits_upgrade`, so whoever stores them
  marks the chunks for re-embedding by the real service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ingest.errors import IngestError, VendorError
from router.backoff import RetriesExhausted
from router.circuit import CircuitBreaker, Outcome
from router.protocols import Embedder, EmbedResult, Parser, ParseResult, resumes_jobs
from router.vendor_errors import ErrorClass, classify

T = TypeVar("T")

_FATAL = frozenset({ErrorClass.FATAL_AUTH, ErrorClass.FATAL_QUOTA})


def _vendor_class(exc: BaseException) -> ErrorClass:
    """The class of the vendor answer behind `exc`. A VendorError is raised `from None` (its vendor text may
    hold key fragments) but keeps the SDK error as its context: that is what is classified."""
    seen: BaseException | None = exc
    while seen is not None:
        kind = classify(seen)
        if kind is not ErrorClass.UNKNOWN:
            return kind
        seen = seen.__cause__ or seen.__context__
    return ErrorClass.UNKNOWN


def outcome_of(exc: BaseException) -> Outcome:
    """What a failed call says about the service's health."""
    if isinstance(exc, RetriesExhausted):
        # A 429 storm means the service is up and busy: the shared cooldown slows us, the circuit stays.
        return Outcome.SUCCESS if exc.error_class is ErrorClass.RATE_LIMITED else Outcome.FAILURE
    if isinstance(exc, VendorError):
        # Auth and quota never fix themselves; any other refusal (a bad input) is an answer: the service is up.
        return Outcome.FATAL if _vendor_class(exc) in _FATAL else Outcome.SUCCESS
    if isinstance(exc, IngestError):
        return Outcome.SUCCESS  # e.g. the vendor found no text in the document: it answered
    return Outcome.NONE  # a bug of ours or a time limit: no verdict on the service


class _Guard:
    def __init__(self, service: str, breaker: CircuitBreaker) -> None:
        self.service = service
        self.breaker = breaker

    def call(self, fn: Callable[[], T]) -> T:
        try:
            value = fn()
        except BaseException as exc:
            self.breaker.report(self.service, outcome_of(exc), reason=str(exc)[:300])
            raise
        self.breaker.report(self.service, Outcome.SUCCESS)
        return value


class GuardedParser:
    def __init__(self, inner: Parser, service: str, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.name = inner.name
        self.resumes_jobs = resumes_jobs(inner)  # `resume=` / `on_submitted=` reach the inner parser
        self._guard = _Guard(service, breaker)

    def parse(self, data: bytes, *, filename: str, media_type: str, **resume: Any) -> ParseResult:
        return self._guard.call(
            lambda: self.inner.parse(data, filename=filename, media_type=media_type, **resume)
        )


class GuardedEmbedder:
    def __init__(self, inner: Embedder, service: str, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimensions = inner.dimensions
        self._guard = _Guard(service, breaker)

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return self._guard.call(lambda: self.inner.embed(texts))


class StandInEmbedder:
    """The mock embedder serving for the real one in hybrid: what it makes waits for upgrade."""

    awaits_upgrade = True

    def __init__(self, mock: Embedder) -> None:
        self.inner = mock
        self.model = mock.model
        self.dimensions = mock.dimensions

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        return self.inner.embed(texts)


def awaits_upgrade(embedder: Embedder) -> bool:
    """Whether vectors of `embedder` are to be re-embedded by the real service (hybrid's stand-in)."""
    return bool(getattr(embedder, "awaits_upgrade", False))
