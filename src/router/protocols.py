"""The seams between the pipeline and the services it calls. Real and mock clients implement these."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ingest.parsed import ParsedDocument, Submission


@dataclass(slots=True)
class ParseUsage:
    """What the vendor reports for one parse: the basis of its charge."""

    pages: int
    credits: int = 0
    vendor_job_id: str | None = None
    simulated: bool = True


@dataclass(slots=True)
class ParseResult:
    document: ParsedDocument
    usage: ParseUsage
    parser: str  # which client made it, e.g. "mock" or "llamaparse:cost_effective"


@dataclass(slots=True)
class EmbedResult:
    vectors: np.ndarray  # float32, shape (len(texts), dimensions), L2-normalised
    prompt_tokens: int  # billed tokens as the service reports them
    requests: int = 1
    simulated: bool = True
    extra: dict[str, object] = field(default_factory=dict)
    # Attempts that failed after their request may have been billed (an answer we could not read, a read
    # timeout), before an attempt succeeded: the vendor's bill includes them, so the charge does too.
    unconfirmed_tokens: int = 0
    unconfirmed_requests: int = 0

    @property
    def billed_tokens(self) -> int:
        return self.prompt_tokens + self.unconfirmed_tokens

    @property
    def billed_requests(self) -> int:
        return self.requests + self.unconfirmed_requests


OnSubmitted = Callable[[Submission], None]


@runtime_checkable
class Parser(Protocol):
    """Parses one document.

    A parser whose vendor bills per job also sets `resumes_jobs = True` (see `resumes_jobs`) and takes two
    more keywords: `on_submitted`, called with each job as soon as it is made (the caller records it
    durably; what the callback raises, the parse raises), and `resume`, the job recorded by an earlier
    delivery, which the parser looks at before making a new one. Other parsers are called without them.
    """

    name: str

    def parse(self, data: bytes, *, filename: str, media_type: str) -> ParseResult: ...


def resumes_jobs(parser: object) -> bool:
    """Whether `parser` takes `resume=` and `on_submitted=` (a real, per-job billed vendor client)."""
    return getattr(parser, "resumes_jobs", False) is True


@runtime_checkable
class Embedder(Protocol):
    """An embedding space is (model, dimensions): vectors of different spaces are never compared."""

    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> EmbedResult: ...
