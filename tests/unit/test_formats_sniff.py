"""formats.sniff: the type comes from the bytes; the name only tells Markdown from plain text."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from ingest.errors import EmptyDocument, UnreadableDocument, UnsupportedType
from ingest.formats import MEDIA_TYPES, sniff
from tests.corpus import CORPUS, SAMPLES, corpus_params, sample_manifest


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_media_types_are_the_published_names() -> None:
    assert MEDIA_TYPES["pdf"] == "application/pdf"
    assert MEDIA_TYPES["docx"] == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert MEDIA_TYPES["html"] == "text/html"
    assert MEDIA_TYPES["md"] == "text/markdown"
    assert MEDIA_TYPES["txt"] == "text/plain"
    assert MEDIA_TYPES["odt"] == "application/vnd.oasis.opendocument.text"


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["file"]) for e in sample_manifest()])
def test_sample_files_sniff_to_their_format(entry: dict) -> None:
    sniffs_to_its_format(SAMPLES / entry["file"], entry)


@pytest.mark.parametrize("entry", corpus_params("MANIFEST.json"))
def test_corpus_files_sniff_to_their_format(entry: dict) -> None:
    sniffs_to_its_format(CORPUS / entry["file"], entry)


def sniffs_to_its_format(path: Path, entry: dict) -> None:
    expected = MEDIA_TYPES[entry["format"]]
    assert sniff(path, path.name) == expected
    assert sniff(path.read_bytes(), path.name) == expected  # bytes and paths agree


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"GIF89a\x01\x00", "GIF image"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)), "gzip"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "ELF executable"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 60, "legacy Microsoft Office"),
        (b"{\\rtf1\\ansi hello}", "RTF document"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 60, "Windows executable"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07" * 100, "binary data"),
    ],
)
def test_binary_types_are_refused_with_their_name(head: bytes, named: str) -> None:
    with pytest.raises(UnsupportedType) as err:
        sniff(head, "report.pdf")
    message = str(err.value)
    assert named in message
    assert "not a supported document (pdf, docx" in message
    assert "\n" not in message


def test_pdf_is_found_from_magic_whatever_the_name() -> None:
    assert sniff(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "photo.png") == MEDIA_TYPES["pdf"]
    # Readers accept junk before the header within the first KiB.
    assert sniff(b"garbage\n" * 10 + b"%PDF-1.4\n", None) == MEDIA_TYPES["pdf"]


def test_zip_is_classified_by_its_directory() -> None:
    docx = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    assert sniff(docx, "anything.bin") == MEDIA_TYPES["docx"]
    with pytest.raises(UnsupportedType, match="Excel workbook"):
        sniff(_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<x/>"}), "a.docx")
    with pytest.raises(UnsupportedType, match="OpenDocument spreadsheet"):
        sniff(_zip({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}), "a.odt")
    with pytest.raises(UnsupportedType, match="a ZIP archive"):
        sniff(_zip({"notes.txt": b"hello"}), "a.docx")


def test_odt_is_found_from_its_mimetype_entry() -> None:
    odt = _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"})
    assert sniff(odt, "x.docx") == MEDIA_TYPES["odt"]


def test_a_docx_shell_without_its_main_part_is_still_a_docx_for_check_to_refuse() -> None:
    assert (
        sniff(_zip({"[Content_Types].xml": b"<Types/>", "word/styles.xml": b"<s/>"})) == MEDIA_TYPES["docx"]
    )


def test_truncated_zip_is_unreadable_not_guessed() -> None:
    docx = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>" * 50})
    with pytest.raises(UnreadableDocument, match="not a complete ZIP archive"):
        sniff(docx[: len(docx) // 2], "a.docx")


def test_zip_entry_count_is_refused_before_zipfile_parses_the_directory() -> None:
    # An end-of-directory record declaring 60000 entries, with no directory behind it.
    fake = (
        b"PK\x03\x04" + b"\x00" * 26 + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 60000, 60000, 0, 30, 0)
    )
    with pytest.raises(UnreadableDocument, match="60000 ZIP entries"):
        sniff(fake, "a.docx")


def test_zip64_entry_count_is_read_too() -> None:
    start = b"PK\x03\x04" + b"\x00" * 26
    record = b"PK\x06\x06" + struct.pack("<QHHIIQQ", 44, 45, 45, 0, 0, 10**7, 10**7) + b"\x00" * 16
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, len(start), 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with pytest.raises(UnreadableDocument, match="10000000 ZIP entries"):
        sniff(start + record + locator + end, "a.docx")


def test_empty_file_is_an_empty_document() -> None:
    with pytest.raises(EmptyDocument):
        sniff(b"", "empty.pdf")


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"<!DOCTYPE html><p>hi</p>", "notes.txt", "html"),
        (b"\xef\xbb\xbf  <!-- x --><html lang=en><body>hi", None, "html"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE html><html><body>x</body></html>', "page.xhtml", "html"),
        (b"<meta charset=utf-8><title>t</title><body>hi", "page", "html"),
        (b"# Title\n\nSome text.", "README.md", "md"),
        (b"Plain words, nothing else.", "notes.markdown", "md"),
        (b"# Title\n\nSee [the docs](https://example.org).\n", None, "md"),
        (b"```\ncode\n```\n", "README", "md"),
        (b"# Title\n\nSee [the docs](https://example.org).\n", "notes.txt", "txt"),
        (b"Just a note about <html> tags in prose.", None, "txt"),
        (b"Just a note.", None, "txt"),
        ("Grüße aus Köln".encode("utf-16"), "a.txt", "txt"),
    ],
)
def test_text_types(data: bytes, filename: str | None, expected: str) -> None:
    assert sniff(data, filename) == MEDIA_TYPES[expected]


def test_text_under_a_binary_documents_name_is_a_mismatch() -> None:
    with pytest.raises(UnsupportedType, match=r"named \.docx but holds plain text"):
        sniff(b"This is plain text, not a ZIP container.", "letter.docx")


def test_xml_and_svg_are_not_taken_for_text() -> None:
    with pytest.raises(UnsupportedType, match="XML document"):
        sniff(b'<?xml version="1.0"?><feed><entry/></feed>', "feed.txt")
    with pytest.raises(UnsupportedType, match="SVG image"):
        sniff(b'<svg xmlns="http://www.w3.org/2000/svg"><text>x</text></svg>', "a.txt")


def test_a_few_nuls_keep_text_but_many_make_it_binary() -> None:
    text = b"ordinary words here. " * 20
    assert sniff(text + b"\x00\x00" + text, "a.txt") == MEDIA_TYPES["txt"]
    with pytest.raises(UnsupportedType, match="binary data"):
        sniff("utf-16 without a byte-order mark".encode("utf-16-le"), "a.txt")


def test_letter_signatures_do_not_refuse_text() -> None:
    # "MZ", "ID3" and "ftyp" are binary signatures only when the rest is binary too.
    assert sniff(b"MZ is how the team signs its notes.", "a.txt") == MEDIA_TYPES["txt"]
    assert sniff(b"ID3 tags describe MP3 files.", None) == MEDIA_TYPES["txt"]


def test_sniffing_a_path_reads_only_its_head(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as fh:
        fh.write(b"hello world\n" * 8000)  # more than the sniffed head
        fh.truncate(300 * 1024 * 1024)  # sparse: costs no disk, but reading it would cost 300 MB
    tracemalloc.start()
    try:
        assert sniff(big, big.name) == MEDIA_TYPES["txt"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_legacy_encoded_text_is_refused_but_html_may_declare_it() -> None:
    russian = "Привет, мир. Это обычный текст в старой кодировке.".encode("cp1251")
    with pytest.raises(UnsupportedType, match="encoding other than UTF-8"):
        sniff(russian, "notes.txt")
    page = b'<html><head><meta charset="windows-1251"></head><body><p>' + russian + b"</p></body></html>"
    assert sniff(page, "page.html") == MEDIA_TYPES["html"]
    # A few stray Latin-1 bytes in UTF-8 text are cleaned later, not refused.
    assert sniff("café au lait, ".encode() * 20 + b"na\xefve", "a.txt") == MEDIA_TYPES["txt"]
