"""formats.extract and formats.check: text quality on real documents, structure on built ones."""

from __future__ import annotations

import io
import re
import threading
import time
import unicodedata
import zipfile
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.errors import EmptyDocument, UnreadableDocument, UnsupportedType
from ingest.formats import MEDIA_TYPES, Limits, check, extract
from ingest.formats.pdflayout import Line, dehyphenator, document_blocks
from ingest.formats.safezip import BoundedReader
from ingest.parsed import Block
from tests.corpus import CORPUS, SAMPLES, corpus_manifest, corpus_params, needs_corpus, sample_manifest

_JUNK = re.compile("[\x00-\x08\x0b-\x1f\x7f\u00ad\u200b\ufeff\ufffe\uffff]")


def _fact_form(text: str) -> str:
    """The manifest's comparison: NFKC, whitespace collapsed, case folded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


# --- the sample corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["file"]) for e in sample_manifest()])
def test_sample_facts_survive_extraction(entry: dict) -> None:
    facts_survive(SAMPLES / entry["file"], entry)


@pytest.mark.parametrize("entry", corpus_params("MANIFEST.json"))
def test_corpus_facts_survive_extraction(entry: dict) -> None:
    facts_survive(CORPUS / entry["file"], entry)
    if entry["format"] == "pdf":
        document = extract(CORPUS / entry["file"], filename=entry["file"])
        assert document.pages == entry["pages"]
        assert all(block.page is not None and 1 <= block.page <= entry["pages"] for block in document.blocks)


def facts_survive(path: Path, entry: dict) -> None:
    document = extract(path, filename=path.name)
    assert document.media_type == MEDIA_TYPES[entry["format"]]
    assert not document.partial
    text = _fact_form(document.text)
    missing = [fact for fact in entry["facts"] if _fact_form(fact) not in text]
    assert not missing
    assert not _JUNK.search(document.text)
    # Code keeps its indentation; everything else is trimmed; nothing is blank.
    assert all(block.text.strip() for block in document.blocks)
    assert all(b.text == b.text.strip() for b in document.blocks if b.kind != "code")


@needs_corpus
def test_whole_corpus_extracts_in_seconds() -> None:
    started = time.perf_counter()
    chars = sum(len(extract(CORPUS / e["file"], filename=e["file"]).text) for e in corpus_manifest())
    elapsed = time.perf_counter() - started
    assert chars > 1_000_000
    assert elapsed < 10, f"corpus took {elapsed:.1f}s"


@needs_corpus
@pytest.mark.parametrize(
    ("file", "present", "absent"),
    [
        ("pdf/R-FAQ.pdf", ["HTML versions of the R manuals"], ["man-uals", "manuals-"]),
        ("pdf/carroll-wonderland.pdf", ["Jack-in-the-box"], []),  # a compound chain keeps its hyphen
        ("pdf/elsarticle-5p-sample.pdf", ["quasi-particle"], ["quasiparticle"]),  # spelt so elsewhere
        ("pdf/metafor-jss-paper.pdf", ["meta-analyses", "mixed-effects"], ["metaanalyses"]),
        ("pdf/R-FAQ.pdf", [], ["Chapter 2: R Basics 5"]),  # running header removed
    ],
)
def test_pdf_line_end_hyphens_and_running_headers(file: str, present: list[str], absent: list[str]) -> None:
    text = extract(CORPUS / file, filename=file).text
    assert all(word in text for word in present)
    assert not any(word in text for word in absent)


@needs_corpus
def test_pdf_blocks_are_paragraphs_and_code_not_lines() -> None:
    document = extract(CORPUS / "pdf/R-FAQ.pdf", filename="R-FAQ.pdf")
    page9 = [b for b in document.blocks if b.page == 9]
    assert Block("Finally, use make check to find out whether your R system works correctly.", 9) in page9
    assert Block("$ ./configure --prefix=/where/you/want/R/to/go", 9, (), "code") in page9
    lines_per_page = 1761 / 52  # what PDFium reports as lines
    assert len(document.blocks) < 0.5 * lines_per_page * 52


@needs_corpus
def test_pdf_text_is_cut_at_max_chars_and_flagged_partial() -> None:
    document = extract(CORPUS / "pdf/R-FAQ.pdf", filename="R-FAQ.pdf", limits=Limits(max_chars=5000))
    assert document.partial
    assert len("".join(b.text for b in document.blocks)) <= 5000
    assert document.pages is not None and document.pages < 52  # pages counts what was read
    assert any("5000 characters" in w for w in document.warnings)


@needs_corpus
def test_pdf_page_limit_is_checked_at_upload() -> None:
    with pytest.raises(UnreadableDocument, match="52 pages, over the limit of 10"):
        check(CORPUS / "pdf/R-FAQ.pdf", MEDIA_TYPES["pdf"], Limits(max_pages=10))


@needs_corpus
def test_pdf_extraction_is_safe_from_several_threads() -> None:
    path = CORPUS / "pdf/debian-history-en.pdf"
    expected = extract(path, filename=path.name).text
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(extract(path, filename="h.pdf").text))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_a_cut_pdf_is_unreadable_not_empty() -> None:
    data = (SAMPLES / "carroll-wonderland.pdf").read_bytes()
    with pytest.raises(UnreadableDocument, match="corrupt or truncated"):
        extract(data[: len(data) // 3], filename="cut.pdf")


# --- PDF layout (pure) -------------------------------------------------------------------------


def _line(
    text: str, y: float, left: float = 72, right: float = 540, size: float = 10, mono: bool = False
) -> Line:
    return Line(text, left, right, y + 8, y - 2, y - 2, size, mono)


def _page(*lines: Line) -> list[Line]:
    return list(lines)


def test_layout_splits_on_short_lines_indents_gaps_and_fonts() -> None:
    page = _page(
        _line("The first paragraph runs all the way to the", 700),
        _line("margin and ends here.", 688, right=200),
        _line("A second one starts indented and also runs", 676, left=87),
        _line("on to a second line", 664),
        _line("after a gap a third begins", 630),
        _line("x = compute(1)", 618, mono=True, right=150),
        _line("print(x)", 606, mono=True, right=120),
    )
    blocks = document_blocks([page])
    assert blocks == [
        (1, "paragraph", "The first paragraph runs all the way to the margin and ends here."),
        (1, "paragraph", "A second one starts indented and also runs on to a second line"),
        (1, "paragraph", "after a gap a third begins"),
        (1, "code", "x = compute(1)\nprint(x)"),
    ]


def test_layout_drops_running_headers_and_joins_paragraphs_across_pages() -> None:
    pages = [
        _page(
            _line(f"Journal of Tests {n}", 760, right=300),
            _line("A sentence that begins on this page and", 700),
            _line("carries on over the", 688),
            _line(f"{n}", 40, left=300, right=310),
        )
        for n in range(1, 5)
    ]
    pages[1][1] = _line("page break without ending, as it goes", 700)
    blocks = document_blocks(pages)
    texts = [text for _, _, text in blocks]
    assert not any("Journal of Tests" in t for t in texts)
    assert not any(t.isdigit() for t in texts)
    joined = (
        "A sentence that begins on this page and carries on over the page break without ending, as it goes"
    )
    assert (1, "paragraph", joined + " carries on over the") in blocks


def test_dehyphenation_follows_the_documents_own_spelling() -> None:
    resolve = dehyphenator("a quasi-particle here; the document again; x86-64 and R-devel")
    assert resolve("a quasi\ufffeparticle") == "a quasi-particle"
    assert resolve("the docu\ufffement") == "the document"
    assert resolve("the Jack-in-the\ufffebox") == "the Jack-in-the-box"
    assert (
        resolve("see https://example.org/developers\ufffereference")
        == "see https://example.org/developers-reference"
    )
    assert resolve("R\ufffedevel") == "R-devel"
    started = time.perf_counter()
    assert resolve(("x" * 100_000 + "\ufffe") * 50 + "x") == "x" * 5_000_001  # bounded look-around
    assert time.perf_counter() - started < 1


# --- DOCX --------------------------------------------------------------------------------------

_W = (
    'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
)
_STYLES = (
    f"<w:styles {_W}>"
    '<w:style w:type="paragraph" w:styleId="Titre"><w:name w:val="Title"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Titre1"><w:name w:val="heading 1"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Titre2"><w:name w:val="heading 2"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Fancy"><w:name w:val="Fancy"/><w:basedOn w:val="Titre2"/></w:style>'
    '<w:style w:type="paragraph" w:styleId="Loop"><w:name w:val="Loop"/><w:basedOn w:val="Loop"/></w:style>'
    "</w:styles>"
)


def _p(text: str, style: str | None = None, numbered: bool = False) -> str:
    props = f'<w:pStyle w:val="{style}"/>' if style else ""
    props += '<w:numPr><w:numId w:val="1"/></w:numPr>' if numbered else ""
    return f"<w:p><w:pPr>{props}</w:pPr><w:r><w:t>{text}</w:t></w:r></w:p>"


def _docx(
    body: str, styles: str | None = _STYLES, extra: dict[str, bytes] | None = None, prolog: str = ""
) -> bytes:
    document = f'<?xml version="1.0"?>{prolog}<w:document {_W}><w:body>{body}</w:body></w:document>'
    entries = {
        "[Content_Types].xml": b"<Types/>",
        "word/document.xml": document.encode(),
        **({"word/styles.xml": styles.encode()} if styles else {}),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _cell(text: str) -> str:
    return f"<w:tc>{_p(text)}</w:tc>"


def test_docx_structure_headings_lists_tables() -> None:
    body = (
        _p("Annual report", "Titre")
        + _p("Introduction", "Titre1")
        + _p("First paragraph.")
        + _p("item one", numbered=True)
        + _p("Details", "Fancy")  # a heading through basedOn
        + f"<w:tbl><w:tr>{_cell('Name')}{_cell('Value')}</w:tr><w:tr>{_cell('a')}<w:tc>"
        + f"<w:tbl><w:tr>{_cell('nested')}</w:tr></w:tbl></w:tc></w:tr></w:tbl>"
        + _p("Looping style is body text", "Loop")
        + _p("Second chapter", "Titre1")
        + "<w:p><w:r><w:t>tab</w:t><w:tab/><w:t>and</w:t><w:br/><w:t>break</w:t></w:r></w:p>"
    )
    blocks = extract(_docx(body), filename="r.docx").blocks
    assert blocks == [
        Block("Annual report", None, ("Annual report",), "heading"),
        Block("Introduction", None, ("Annual report", "Introduction"), "heading"),
        Block("First paragraph.", None, ("Annual report", "Introduction"), "paragraph"),
        Block("item one", None, ("Annual report", "Introduction"), "list"),
        Block("Details", None, ("Annual report", "Introduction", "Details"), "heading"),
        Block("Name | Value\na | nested", None, ("Annual report", "Introduction", "Details"), "table"),
        Block("Looping style is body text", None, ("Annual report", "Introduction", "Details"), "paragraph"),
        Block("Second chapter", None, ("Annual report", "Second chapter"), "heading"),
        Block("tab and\nbreak", None, ("Annual report", "Second chapter"), "paragraph"),
    ]


def test_docx_skips_deleted_text_field_codes_and_duplicate_fallbacks() -> None:
    body = (
        "<w:p><w:r><w:t>Kept </w:t></w:r><w:del><w:r><w:delText>DELETED</w:delText></w:r></w:del>"
        '<w:r><w:instrText> TOC \\o "1-3" </w:instrText></w:r><w:r><w:t>words.</w:t></w:r></w:p>'
        "<w:p><w:r><mc:AlternateContent><mc:Choice><w:t>boxed</w:t></mc:Choice>"
        "<mc:Fallback><w:t>boxed</w:t></mc:Fallback></mc:AlternateContent></w:r></w:p>"
    )
    assert extract(_docx(body, styles=None), filename="d.docx").text == "Kept words.\n\nboxed"


def test_docx_part_over_the_limit_is_refused_from_the_directory() -> None:
    big = _p("x" * 5000)
    with pytest.raises(UnreadableDocument, match="word/document.xml .* expands to"):
        check(_docx(big), MEDIA_TYPES["docx"], Limits(max_unzipped_bytes=1000))


@pytest.mark.parametrize("name", ["/etc/passwd", "a/../../b.txt", "C:/x.txt", "word\\..\\x.txt"])
def test_docx_unsafe_entry_names_are_refused(name: str) -> None:
    with pytest.raises(UnreadableDocument, match="unsafe path"):
        check(_docx(_p("hi"), extra={name: b"x"}), MEDIA_TYPES["docx"])


def test_docx_without_document_xml_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        archive.writestr("word/styles.xml", _STYLES)
    data = buffer.getvalue()
    with pytest.raises(UnreadableDocument, match="has no word/document.xml"):
        check(data, MEDIA_TYPES["docx"])


def test_docx_with_a_duplicated_main_part_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", b"<a/>")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("word/document.xml", b"<b/>")
    with pytest.raises(UnreadableDocument, match="twice"):
        check(buffer.getvalue(), MEDIA_TYPES["docx"])


def test_docx_with_any_dtd_is_refused() -> None:
    data = _docx(_p("hello"), styles=None, prolog="<!DOCTYPE w:document []>")
    with pytest.raises(UnreadableDocument, match="declares a DTD"):
        extract(data, filename="d.docx")


def test_bounded_reader_stops_past_its_limit() -> None:
    reader = BoundedReader(io.BytesIO(b"a" * 10_000), 4096, "part")
    assert reader.read(4096) == b"a" * 4096
    with pytest.raises(UnreadableDocument, match="inflates past the limit"):
        reader.read(4096)


# --- ODT ---------------------------------------------------------------------------------------


def test_odt_headings_lists_tables_and_spaces() -> None:
    text_ns = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
    content = (
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        f'xmlns:text="{text_ns}" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0">'
        "<office:body><office:text>"
        '<text:h text:outline-level="1">Guide</text:h>'
        '<text:p>Two<text:s text:c="1000000000"/>spaces<text:note><text:note-body><text:p>FOOTNOTE</text:p>'
        "</text:note-body></text:note> end.</text:p>"
        "<text:list><text:list-item><text:p>an item</text:p></text:list-item></text:list>"
        "<table:table><table:table-row><table:table-cell><text:p>k</text:p></table:table-cell>"
        "<table:table-cell><text:p>v</text:p></table:table-cell></table:table-row></table:table>"
        "</office:text></office:body></office:document-content>"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    document = extract(buffer.getvalue(), filename="g.odt")
    assert document.media_type == MEDIA_TYPES["odt"]
    assert document.blocks == [
        Block("Guide", None, ("Guide",), "heading"),
        Block("Two spaces end.", None, ("Guide",), "paragraph"),
        Block("an item", None, ("Guide",), "list"),
        Block("k | v", None, ("Guide",), "table"),
    ]


# --- HTML --------------------------------------------------------------------------------------


def test_html_visible_text_structure() -> None:
    page = b"""<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body>
    <nav>Home | About</nav><div role="navigation">Menu</div>
    <h1>Guide</h1><p>Intro <b>bold</b> text<br>next line.</p>
    <div hidden>secret one</div><p style="display: none">secret two</p><span aria-hidden="true">icon</span>
    <h2>Steps</h2><ul><li>first</li><li>second<ul><li>nested</li></ul></li></ul>
    <pre>  indented
    code</pre>
    <table><caption>Sizes</caption><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>
    <table><tr><td><p>layout cell</p></td></tr></table>
    <h1>Annex</h1>loose text<script>alert('x')</script><template>tpl</template></body></html>"""
    blocks = extract(page, filename="p.html").blocks
    assert blocks == [
        Block("Guide", None, ("Guide",), "heading"),
        Block("Intro bold text\nnext line.", None, ("Guide",), "paragraph"),
        Block("Steps", None, ("Guide", "Steps"), "heading"),
        Block("first", None, ("Guide", "Steps"), "list"),
        Block("second", None, ("Guide", "Steps"), "list"),
        Block("nested", None, ("Guide", "Steps"), "list"),
        Block("  indented\n    code", None, ("Guide", "Steps"), "code"),
        Block("Sizes\na | b\n1 | 2", None, ("Guide", "Steps"), "table"),
        Block("layout cell", None, ("Guide", "Steps"), "paragraph"),
        Block("Annex", None, ("Annex",), "heading"),
        Block("loose text", None, ("Annex",), "paragraph"),
    ]


def test_html_is_streamed_in_order_across_feed_chunks() -> None:
    body = "".join(f"<div>loose {n}<p>para {n}</p>tail {n}</div>" for n in range(40_000))
    blocks = extract(f"<html><body>{body}</body></html>".encode(), filename="p.html").blocks
    assert len(body) > 1.5 * 1024 * 1024  # more than one parser feed
    assert [b.text for b in blocks[:6]] == ["loose 0", "para 0", "tail 0", "loose 1", "para 1", "tail 1"]
    assert [b.text for b in blocks[-3:]] == ["loose 39999", "para 39999", "tail 39999"]
    assert len(blocks) == 120_000


def test_html_declared_charset_is_honoured() -> None:
    page = '<html><head><meta charset="iso-8859-15"></head><body><p>Grüße €</p></body></html>'
    assert extract(page.encode("iso-8859-15"), filename="p.html").text == "Grüße €"


def test_html_with_only_markup_is_empty() -> None:
    with pytest.raises(EmptyDocument, match="no extractable text"):
        extract(b"<html><body><script>var a = 1;</script><img src=x></body></html>", filename="p.html")


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_blocks() -> None:
    source = b"""---
title: Front matter
---
<!-- hidden
comment -->
Setext title
============

Intro text
over two lines.

## Install ##

```sh
# not a heading

pip install x
```

- one
- two
  continued

| a | b |
|---|:-:|
| 1 | 2 |

    indented code

### Deep
"""
    blocks = extract(source, filename="README.md").blocks
    assert blocks == [
        Block("title: Front matter", None, (), "paragraph"),
        Block("Setext title", None, ("Setext title",), "heading"),
        Block("Intro text\nover two lines.", None, ("Setext title",), "paragraph"),
        Block("Install", None, ("Setext title", "Install"), "heading"),
        Block("# not a heading\n\npip install x", None, ("Setext title", "Install"), "code"),
        Block("- one", None, ("Setext title", "Install"), "list"),
        Block("- two\ncontinued", None, ("Setext title", "Install"), "list"),
        Block("a | b\n1 | 2", None, ("Setext title", "Install"), "table"),
        Block("indented code", None, ("Setext title", "Install"), "code"),
        Block("Deep", None, ("Setext title", "Install", "Deep"), "heading"),
    ]


def test_markdown_hostile_lines_are_linear() -> None:
    started = time.perf_counter()
    for line in (
        "# " + " " * 2_000_000 + "x",
        "=" * 2_000_000 + "x",
        "<!--" + "-" * 2_000_000,
        "|" * 2_000_000,
    ):
        extract(("para\n" + line).encode(), filename="x.md")
    assert time.perf_counter() - started < 3


# --- plain text --------------------------------------------------------------------------------


def test_text_paragraphs_split_on_blank_lines_and_form_feeds() -> None:
    data = b"first  line\r\nsame   paragraph\r\n \t\r\nsecond\x0cthird\n\n\n"
    assert [b.text for b in extract(data, filename="a.txt").blocks] == [
        "first line\nsame paragraph",
        "second",
        "third",
    ]


def test_text_encodings_and_cleaning() -> None:
    utf16 = extract("Grüße\n\nzweiter Absatz".encode("utf-16"), filename="a.txt")
    assert utf16.text == "Grüße\n\nzweiter Absatz"
    assert not utf16.warnings
    broken = extract(b"caf\xe9 ok\x00 here \xef\xbb\xbfnow" + b" and more words" * 10, filename="a.txt")
    assert broken.text.startswith("caf\ufffd ok here now and more words")
    assert any("invalid UTF-8" in w for w in broken.warnings)
    assert any("NUL" in w for w in broken.warnings)


def test_text_that_turns_binary_after_the_head_is_refused() -> None:
    data = b"plain words " * 10_000 + bytes(range(256)) * 2000
    with pytest.raises(UnsupportedType, match="binary data"):
        extract(data, filename="log.txt")


def test_single_huge_line_is_linear() -> None:
    data = b"A1b2C3" * (5 * 1024 * 1024 // 6)
    started = time.perf_counter()
    document = extract(data, filename="data.txt")
    assert time.perf_counter() - started < 2
    assert len(document.text) == len(data)


# --- check / limits ----------------------------------------------------------------------------


def test_check_refuses_blank_text_and_unknown_types() -> None:
    with pytest.raises(EmptyDocument, match="only whitespace"):
        check(" \t\r\n\u00a0\u200b\ufeff".encode() * 1000, MEDIA_TYPES["txt"])
    with pytest.raises(EmptyDocument, match="0 bytes"):
        check(b"", MEDIA_TYPES["pdf"])
    with pytest.raises(UnsupportedType):
        check(b"x", "image/png")
    check(b"\n" * 100_000 + b"x", MEDIA_TYPES["md"])  # passes: there is text


def test_limits_follow_settings() -> None:
    limits = Limits.from_settings(Settings(max_pages=10, max_extracted_mb=2))
    assert limits == Limits(max_pages=10, max_chars=2 * 1024 * 1024, max_unzipped_bytes=2 * 1024 * 1024)


def test_tiny_blocks_are_bounded_by_the_cap_too() -> None:
    document = extract(b"a\n\n" * 100_000, filename="a.txt", limits=Limits(max_chars=65_000))
    assert document.partial
    assert len(document.blocks) <= 1000


def test_text_cap_cuts_and_flags_partial() -> None:
    document = extract(b"word " * 10_000, filename="a.txt", limits=Limits(max_chars=100))
    assert document.partial
    assert len(document.text) <= 100


def test_html_in_a_declared_legacy_encoding_is_read() -> None:
    page = '<html><head><meta charset="windows-1251"></head><body><p>Привет, мир.</p></body></html>'
    assert extract(page.encode("cp1251"), filename="p.html").text == "Привет, мир."
