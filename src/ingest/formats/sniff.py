"""What a file is, from its bytes. The extension is never trusted for binary types.

Magic bytes decide binary types; a ZIP is classified by its directory (and ODF's `mimetype`
entry). Text is HTML when its markup says so at the start; otherwise the file name tells
Markdown from plain text, and without a telling name strong Markdown signals do. The name also
matters once more: text under a binary document's extension (`letter.docx` holding plain text)
is refused as a mismatch, since such a file is broken or mislabelled, not a text document.
Text that is not UTF-8 (and has no byte-order mark) is refused unless it is HTML, which can
declare its charset (decoding).
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePath

from ingest.errors import EmptyDocument, UnsupportedType

from . import decoding, safezip
from .mediatypes import DOCX, HTML, MARKDOWN, ODT, PDF, SUPPORTED, TEXT
from .source import Source, byte_size, read_head

HEAD_BYTES = 64 * 1024


def _table(*entries: tuple[bytes, str]) -> tuple[tuple[re.Pattern[bytes], str], ...]:
    return tuple((re.compile(pattern, re.DOTALL), what) for pattern, what in entries)


# Signatures that text never starts with (or text formats we refuse): checked before anything else.
_MAGIC = _table(
    (rb"\x89PNG\r\n\x1a\n", "a PNG image"),
    (rb"\xff\xd8\xff", "a JPEG image"),
    (rb"GIF8[79]a", "a GIF image"),
    (rb"II\*\x00|MM\x00\*", "a TIFF image"),
    (rb"\x1f\x8b", "a gzip-compressed file"),
    (rb"\xfd7zXZ\x00", "an xz-compressed file"),
    (rb"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (rb"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (rb"Rar!\x1a\x07", "a RAR archive"),
    (rb"\x7fELF", "an ELF executable"),
    (rb"\xfe\xed\xfa[\xce\xcf]|[\xce\xcf]\xfa\xed\xfe|\xca\xfe\xba\xbe", "a Mach-O executable or Java class"),
    (rb"\x00asm", "a WebAssembly module"),
    (rb"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (doc/xls/ppt)"),
    (rb"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (rb"SQLite format 3\x00", "an SQLite database"),
    (rb"\{\\rtf", "an RTF document"),
    (rb"%!PS", "a PostScript file"),
)
# Signatures made of plain letters ("ID3 tags ..." is fine text): used only to name binary data.
_WEAK_MAGIC = _table(
    (rb"MZ", "a Windows executable"),
    (rb"RIFF....WEBP", "a WebP image"),
    (rb"RIFF....(?:WAVE|AVI )", "a RIFF audio/video file"),
    (rb"....ftyp(?:heic|heix|mif1|avif)", "an HEIF/AVIF image"),
    (rb"....ftyp", "an MP4/QuickTime video"),
    (rb"ID3|\xff[\xfb\xf3\xf2]", "an MP3 audio file"),
    (rb"OggS|fLaC", "an audio file"),
    (rb"BZh[1-9]", "a bzip2-compressed file"),
    (rb".{257}ustar", "a tar archive"),
    (rb"AT&TFORM", "a DjVu document"),
)
_ZIP = re.compile(rb"PK(?:\x03\x04|\x05\x06)")
_ZIP_KINDS: tuple[tuple[str, str], ...] = (
    ("xl/workbook.xml", "an Excel workbook (xlsx)"),
    ("ppt/presentation.xml", "a PowerPoint presentation (pptx)"),
    ("META-INF/MANIFEST.MF", "a Java archive (jar)"),
)
_ODF_KINDS = {
    b"application/vnd.oasis.opendocument.spreadsheet": "an OpenDocument spreadsheet (ods)",
    b"application/vnd.oasis.opendocument.presentation": "an OpenDocument presentation (odp)",
    b"application/vnd.oasis.opendocument.graphics": "an OpenDocument drawing (odg)",
    b"application/epub+zip": "an EPUB e-book",
}

# Leading matter an HTML or XML file may have before its first real tag.
_PROLOG = re.compile(r"(?:\s|<\?xml[^>]*>|<!--.*?-->)*", re.DOTALL)
_HTML_START = re.compile(r"<!doctype\s+html|<(?:html|head|body)[\s>]", re.IGNORECASE)
_HTML_TAG = re.compile(r"<(?:html|head|body)[\s>]", re.IGNORECASE)
_MD_NAMES = {".md", ".markdown", ".mdown", ".mkd", ".mkdn"}
_TEXT_NAMES = {".txt", ".text"}
_JSON_NAMES = {".json", ".jsonl", ".ndjson", ".geojson"}
_BINARY_NAMES = {
    ".pdf": "PDF",
    ".docx": "Word document",
    ".docm": "Word document",
    ".doc": "Word document",
    ".odt": "OpenDocument text",
    ".xlsx": "spreadsheet",
    ".xls": "spreadsheet",
    ".pptx": "presentation",
    ".ppt": "presentation",
}
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)
_MD_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)
_MD_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")


def _refuse(what: str) -> UnsupportedType:
    return UnsupportedType(f"the file is {what}, not a supported document ({SUPPORTED})")


def sniff(source: Source, filename: str | None = None) -> str:
    """The media type the bytes show, or UnsupportedType naming what they are instead.

    Raises EmptyDocument for a 0-byte file, and UnreadableDocument for a ZIP whose directory
    cannot be read (there is no telling whether it was meant to be a DOCX).
    """
    head = read_head(source, HEAD_BYTES)
    if not head:
        raise EmptyDocument("the file is empty (0 bytes)")
    if b"%PDF-" in head[:1024]:  # PDF readers accept a header anywhere in the first KiB
        return PDF
    if _ZIP.match(head):
        return _sniff_zip(source)
    for pattern, what in _MAGIC:
        if pattern.match(head):
            raise _refuse(what)
    complete = byte_size(source) <= len(head)
    reason = decoding.binary_reason(head, complete)
    if reason:
        raise _refuse(next((what for pattern, what in _WEAK_MAGIC if pattern.match(head)), reason))
    return _sniff_text(head, complete, filename)


def _sniff_zip(source: Source) -> str:
    with safezip.open_zip(source, "file") as archive:
        names = set(archive.namelist())
        if "word/document.xml" in names or (
            "[Content_Types].xml" in names and any(n.startswith("word/") for n in names)
        ):
            return DOCX
        mimetype = safezip.read_small(archive, "mimetype", 100)
    if mimetype is not None:
        mimetype = mimetype.strip()
        if mimetype == ODT.encode():
            return ODT
        if mimetype in _ODF_KINDS:
            raise _refuse(_ODF_KINDS[mimetype])
    for marker, what in _ZIP_KINDS:
        if marker in names:
            raise _refuse(what)
    raise _refuse("a ZIP archive")


def _sniff_text(head: bytes, complete: bool, filename: str | None) -> str:
    found = decoding.bom(head)
    encoding, skip = found if found else ("utf-8", 0)
    text = codecs.getincrementaldecoder(encoding)("replace").decode(head[skip:], final=complete)
    start = text[_PROLOG.match(text).end() :]  # type: ignore[union-attr]  # the pattern always matches
    if _HTML_START.match(start) or (start.startswith("<") and _HTML_TAG.search(start, 0, 4096)):
        return HTML
    if not found:
        decoding.require_utf8(head, text)  # only HTML may declare another encoding
    if start[:4].lower() == "<svg":
        raise _refuse("an SVG image")
    if text.lstrip().startswith("<?xml"):
        raise _refuse("an XML document")
    suffix = PurePath(filename).suffix.lower() if filename else ""
    if suffix in _BINARY_NAMES:
        raise UnsupportedType(
            f"the file is named {suffix} but holds plain text, not a {_BINARY_NAMES[suffix]}; "
            f"supported documents: {SUPPORTED}"
        )
    if suffix in _MD_NAMES:
        return MARKDOWN
    if suffix in _TEXT_NAMES:
        return TEXT
    # Data, not a document: indexing it as prose would put its keys and quoting into search results.
    # Only when both the name and the content say JSON: JSON text named .md or .txt is taken as named.
    if suffix in _JSON_NAMES and start.lstrip()[:1] in ("{", "["):
        raise _refuse("JSON data")
    fences = len(_MD_FENCE.findall(text))
    if fences >= 2 or (_MD_HEADING.search(text) and (fences or _MD_LINK.search(text))):
        return MARKDOWN
    return TEXT
