"""LlamaParse markdown pages <-> blocks: pages kept, headings carried across pages, a faithful round trip."""

from __future__ import annotations

from ingest.parsed import Block
from router.llamaparse.markdown import (
    PageText,
    block_markdown,
    blocks_to_markdown,
    markdown_to_blocks,
    paginate,
    text_to_blocks,
)

BIG = 10**6


def test_headings_drive_the_path_and_carry_over_page_breaks() -> None:
    pages = [
        PageText(1, "# Guide\n\nIntro.\n\n## Install\n\nRun it."),
        PageText(2, "Still installing.\n\n# Appendix\n\n```\ncode  kept\n```"),
    ]
    blocks, warnings = markdown_to_blocks(pages, max_chars=BIG)
    assert [(b.page, b.kind, b.heading_path, b.text) for b in blocks] == [
        (1, "heading", ("Guide",), "Guide"),
        (1, "paragraph", ("Guide",), "Intro."),
        (1, "heading", ("Guide", "Install"), "Install"),
        (1, "paragraph", ("Guide", "Install"), "Run it."),
        (2, "paragraph", ("Guide", "Install"), "Still installing."),
        (2, "heading", ("Appendix",), "Appendix"),
        (2, "code", ("Appendix",), "code  kept"),
    ]
    assert warnings == []


def test_a_page_break_closes_an_open_fence() -> None:
    blocks, _ = markdown_to_blocks([PageText(1, "```\nunclosed"), PageText(2, "# After")], max_chars=BIG)
    assert [(b.page, b.kind) for b in blocks] == [(1, "code"), (2, "heading")]


def test_text_is_capped_with_a_warning() -> None:
    blocks, warnings = markdown_to_blocks([PageText(1, "a " * 500), PageText(2, "more")], max_chars=300)
    assert len(blocks) == 1 and warnings and all(b.page == 1 for b in blocks)


def test_plain_text_pages_are_paragraphs_never_markup() -> None:
    blocks, _ = text_to_blocks([PageText(3, "# not a heading\n- not a list\n\n  next  para ")], max_chars=BIG)
    assert [(b.page, b.kind, b.text) for b in blocks] == [
        (3, "paragraph", "# not a heading\n- not a list"),
        (3, "paragraph", "next para"),
    ]


def test_blocks_written_as_markdown_read_back_the_same() -> None:
    blocks = [
        Block("Title", 1, ("Title",), "heading"),
        Block("Plain words\nover two lines.", 1, ("Title",), "paragraph"),
        Block("Section", 1, ("Title", "Section"), "heading"),
        Block("first item", 1, ("Title", "Section"), "list"),
        Block("name | value\nx | 1", 1, ("Title", "Section"), "table"),
        Block("print('```')\n    indented", 1, ("Title", "Section"), "code"),
    ]
    back, _ = markdown_to_blocks([PageText(1, blocks_to_markdown(blocks))], max_chars=BIG)
    assert [(b.kind, b.heading_path) for b in back] == [(b.kind, b.heading_path) for b in blocks]
    assert back[1].text == "Plain words over two lines."  # prose line breaks are layout
    assert (
        back[3].text == "- first item" and back[4].text == blocks[4].text and back[5].text == blocks[5].text
    )


def test_prose_that_looks_like_markup_is_escaped() -> None:
    for text in ("# not a heading", "1. not a list", "- nor this", "---", "| no table"):
        markdown = block_markdown(Block(text))
        (back,), _ = markdown_to_blocks([PageText(1, markdown)], max_chars=BIG)
        assert back.kind == "paragraph" and back.text == "\\" + text


def test_paginate_splits_between_blocks() -> None:
    blocks = [Block("x" * 40) for _ in range(5)]
    pages = paginate(blocks, chars_per_page=100)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert paginate([Block("y" * 500)], chars_per_page=100) == [[Block("y" * 500)]]  # never inside a block
