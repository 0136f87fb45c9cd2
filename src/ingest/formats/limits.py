"""Resource limits for reading one document: what a hostile file may cost us at most."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.config import Settings

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_pages: int = 2000  # PDFs with more pages are refused (page bombs)
    max_chars: int = 64 * _MIB  # extracted text beyond this is cut and the document flagged partial
    max_unzipped_bytes: int = 64 * _MIB  # cap on any one decompressed part of a DOCX/ODT

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        cap = settings.max_extracted_mb * _MIB
        return cls(max_pages=settings.max_pages, max_chars=cap, max_unzipped_bytes=cap)
