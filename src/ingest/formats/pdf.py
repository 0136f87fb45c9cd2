"""PDF: text per page through PDFium (pypdfium2), then paragraphs (pdflayout).

PDFium only parses and extracts: it has no JavaScript engine unless forms are initialised with
one (we never call `init_forms`), so actions and scripts in a PDF are inert here.

Policies:
- Encrypted with a user password: refused (422); we cannot read it without the password.
- Encrypted with an owner password only (opens without one, permission flags forbid copying):
  read anyway, with a warning. The flags are advisory, PDFium does not enforce them, and the
  owner of the upload is the one asking for it to be indexed.
- More than `Limits.max_pages` pages: refused (page bombs). Zero pages: empty.
- Corrupt or truncated so PDFium cannot open it: refused (422). A page that fails to load is
  skipped, the document is flagged partial with a warning, and `pages` counts only pages read.
- Text is read until `Limits.max_chars`; the rest is cut and the document flagged partial.

PDFium is not thread-safe: every call into it holds one process-wide lock.
"""

from __future__ import annotations

import ctypes
import re
import threading
from bisect import bisect_left

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.errors import EmptyDocument, UnreadableDocument
from ingest.parsed import ParsedDocument

from . import pdflayout
from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import PDF
from .pdflayout import Line
from .source import Source

PDFIUM_LOCK = threading.Lock()
_PERMISSION_EXTRACT = 1 << 4  # bit 5 of the PDF /P entry: copy or extract text
_FIXED_PITCH = 1  # bit 1 of the font descriptor /Flags
_MONO_NAME = re.compile(r"mono|courier|consol|typewriter|^(?:[A-Z]{6}\+)?[A-Z]*TT\d+", re.IGNORECASE)
_LINE = re.compile(r"[^\r\n]+")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _open(source: Source) -> pdfium.PdfDocument:
    """Open under the caller's lock; PDFium's failure becomes one clear line."""
    try:
        return pdfium.PdfDocument(source if isinstance(source, bytes) else str(source))
    except pdfium.PdfiumError as err:
        if getattr(err, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise UnreadableDocument(
                "the PDF is encrypted with a password; we cannot extract its text without it"
            ) from None
        raise UnreadableDocument("the PDF is corrupt or truncated and cannot be opened") from None


def check(source: Source, limits: Limits) -> None:
    with PDFIUM_LOCK:
        pdf = _open(source)
        try:
            pages = len(pdf)
        finally:
            pdf.close()
    if pages == 0:
        raise EmptyDocument("the PDF has no pages")
    if pages > limits.max_pages:
        raise UnreadableDocument(f"the PDF has {pages} pages, over the limit of {limits.max_pages}")


def _extraction_forbidden(pdf: pdfium.PdfDocument) -> bool:
    encrypted = pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1
    return encrypted and not pdfium_c.FPDF_GetDocPermissions(pdf.raw) & _PERMISSION_EXTRACT


def extract(source: Source, limits: Limits) -> ParsedDocument:
    builder = BlockBuilder(limits.max_chars)
    pages: list[list[Line]] = []
    failed: list[int] = []
    with PDFIUM_LOCK:
        pdf = _open(source)
        try:
            total = len(pdf)
            if _extraction_forbidden(pdf):
                builder.warnings.append(
                    "the PDF's permissions forbid copying text; extracted anyway (advisory)"
                )
            chars = 0
            for index in range(total):
                try:
                    lines = _read_page(pdf, index)
                except pdfium.PdfiumError:
                    failed.append(index + 1)
                    lines = []
                pages.append(lines)
                chars += sum(len(line.text) for line in lines)
                if chars > limits.max_chars:
                    break  # the builder cuts at the limit; later pages would be thrown away
        finally:
            pdf.close()
    for page, kind, text in pdflayout.document_blocks(pages):
        builder.add(text, kind=kind, page=page)
        if builder.full:
            break
    if failed:
        builder.warnings.append(f"{len(failed)} page(s) could not be read and were skipped: {failed[:20]}")
    if len(pages) < total:
        builder.warnings.append(f"only pages 1-{len(pages)} of {total} were read")
    read = len(pages) - len(failed)
    return builder.document(PDF, pages=read, partial=bool(failed) or read < total)


def _read_page(pdf: pdfium.PdfDocument, index: int) -> list[Line]:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return _lines(textpage)
        finally:
            textpage.close()
    finally:
        page.close()


def _lines(textpage: pdfium.PdfTextPage) -> list[Line]:
    text = textpage.get_text_range()
    # PDFium indexes characters in UTF-16 units: astral characters count twice.
    astral = [m.start() for m in _ASTRAL.finditer(text)] if len(text) != textpage.count_chars() else []

    def unit(i: int) -> int:
        return i + bisect_left(astral, i) if astral else i

    lines: list[Line] = []
    for match in _LINE.finditer(text):
        raw = match.group()
        content = raw.strip()
        if not content:
            continue
        first = match.start() + (len(raw) - len(raw.lstrip()))
        last = first + len(content) - 1
        left, first_bottom, _, top = textpage.get_charbox(unit(first), loose=True)
        _, bottom, right, _ = textpage.get_charbox(unit(last), loose=True)
        middle = unit((first + last) // 2)
        lines.append(
            Line(
                text=content,
                left=left,
                right=right,
                top=top,
                first_bottom=first_bottom,
                bottom=bottom,
                size=pdfium_c.FPDFText_GetFontSize(textpage.raw, middle),
                mono=_is_mono(textpage, unit(first)) and _is_mono(textpage, middle),
            )
        )
    return lines


def _is_mono(textpage: pdfium.PdfTextPage, index: int) -> bool:
    flags = ctypes.c_int(0)
    name = ctypes.create_string_buffer(128)
    needed = pdfium_c.FPDFText_GetFontInfo(textpage.raw, index, name, len(name), ctypes.byref(flags))
    if flags.value & _FIXED_PITCH:
        return True
    return 0 < needed <= len(name) and _MONO_NAME.search(name.value.decode("latin-1")) is not None
