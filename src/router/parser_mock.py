"""The stand-in for LlamaParse: our own local extraction, reported the way a vendor reports a parse."""

from __future__ import annotations

import math

from ingest.formats import Limits, extract
from router.protocols import ParseResult, ParseUsage

# Pages billed for a format without pages: one per 3,000 characters of text (about a printed page),
# at least one.
CHARS_PER_PAGE = 3000


class MockParser:
    name = "mock"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def parse(self, data: bytes, *, filename: str, media_type: str) -> ParseResult:
        """Extract locally; raises the `ingest.errors` of `extract` for refused or unreadable files."""
        document = extract(data, filename=filename, media_type=media_type, limits=self.limits)
        chars = sum(len(block.text) for block in document.blocks)
        pages = document.pages or max(1, math.ceil(chars / CHARS_PER_PAGE))
        return ParseResult(
            document=document,
            usage=ParseUsage(pages=pages, credits=0, simulated=True),
            parser=self.name,
        )
