"""Local, hardened reading of uploaded documents: what a file is, whether it is sane, its text.

    sniff(source, filename)   -> media type from the bytes (the extension is never trusted)
    check(source, media_type) -> cheap upload-time refusals (empty, encrypted, bombs, zip-slip)
    extract(source, filename=...) -> ParsedDocument: sniff + check + blocks in reading order

Errors are `ingest.errors` classes carrying one clear line: UnsupportedType (415) when the bytes
are not a supported type, UnreadableDocument (422) when they are but cannot be read safely,
EmptyDocument (422) when there is no text. Supported: PDF, DOCX, ODT, HTML, Markdown, plain text.
Each module's docstring states its policies; in short:
- text: UTF-8 (or a BOM's encoding; HTML may declare its charset); a few NULs or invalid bytes
  are cleaned with a warning; binary data and mostly-not-UTF-8 text are refused (decoding);
  text named like a binary document is refused (sniff).
- PDF: user-password encryption refused; owner-password-only restrictions read with a warning;
  more than max_pages refused; corrupt files refused (pdf).
- DOCX/ODT: ZIP directory validated before inflating; zip-slip names, bombs and DTDs refused
  (safezip, xmlparts).
- A heading block's heading_path ends with the heading itself. Limits.max_chars caps the text,
  each block counting 64 characters extra (so millions of tiny blocks are bounded too); a cut
  document is flagged partial with a warning (blocks).
"""

from .dispatch import check, extract
from .limits import Limits
from .mediatypes import MEDIA_TYPES
from .sniff import sniff

__all__ = ["MEDIA_TYPES", "Limits", "check", "extract", "sniff"]
