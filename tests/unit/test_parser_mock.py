from __future__ import annotations

import pytest

from ingest.errors import UnreadableDocument
from ingest.formats import Limits
from router.parser_mock import MockParser
from router.protocols import Parser, ParseResult
from tests.corpus import CORPUS, needs_corpus

PDF = "application/pdf"


def test_implements_the_protocol() -> None:
    parser = MockParser()
    assert isinstance(parser, Parser)
    assert parser.name == "mock"


def test_markdown_is_billed_by_its_length() -> None:
    short = b"# Notes\n\nThe quarterly review moved to Thursday afternoon in room four.\n"
    result = MockParser().parse(short, filename="notes.md", media_type="text/markdown")
    assert isinstance(result, ParseResult)
    assert result.parser == "mock"
    assert "Thursday afternoon" in result.document.text
    assert result.document.pages is None
    assert (result.usage.pages, result.usage.credits, result.usage.simulated) == (1, 0, True)

    long = ("A sentence of some forty characters....\n\n" * 200).encode()  # 8,000 characters of text
    assert MockParser().parse(long, filename="long.txt", media_type="text/plain").usage.pages == 3


@needs_corpus
def test_pdf_is_billed_by_its_pages() -> None:
    data = (CORPUS / "pdf" / "debian-history-en.pdf").read_bytes()
    result = MockParser().parse(data, filename="debian-history-en.pdf", media_type=PDF)
    assert result.document.pages == 27
    assert result.usage.pages == 27


@needs_corpus
def test_limits_are_applied() -> None:
    data = (CORPUS / "pdf" / "debian-history-en.pdf").read_bytes()
    with pytest.raises(UnreadableDocument):
        MockParser(Limits(max_pages=5)).parse(data, filename="debian-history-en.pdf", media_type=PDF)
