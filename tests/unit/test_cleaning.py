"""Layout noise stays out of chunks: dot leaders, page numbers, running headers and footers."""

from __future__ import annotations

from ingest.chunking import chunk_document
from ingest.cleaning import clean
from ingest.parsed import Block, ParsedDocument


def _pdf(blocks: list[Block], pages: int) -> ParsedDocument:
    return ParsedDocument("application/pdf", blocks, pages=pages)


def test_a_table_of_contents_made_of_dot_leaders_is_dropped() -> None:
    doc = _pdf(
        [
            Block("Table of Contents", page=1),
            Block(
                "1 Introduction . . . . . . . . . . . . . . . . 1\n1.1 Legalese . . . . . . . . . . . . 2",
                page=1,
            ),
            Block("2 R Basics........................................ 3", page=1),
            Block("R is a system for statistical computation and graphics.", page=2),
        ],
        pages=2,
    )
    assert [b.text for b in clean(doc).blocks] == [
        "Table of Contents",
        "R is a system for statistical computation and graphics.",
    ]


def test_a_leader_run_inside_prose_is_removed_and_the_prose_kept() -> None:
    text = "The long answer, which we give in section 7 of the FAQ, is that it depends on the platform . . . . 12"
    (block,) = clean(_pdf([Block(text, page=3)], pages=3)).blocks
    assert (
        block.text
        == "The long answer, which we give in section 7 of the FAQ, is that it depends on the platform"
    )


def test_page_numbers_go_in_paged_documents_only() -> None:
    blocks = [Block("Body text on the page.", page=1), Block("12", page=1), Block("Page 3 of 9", page=2)]
    assert [b.text for b in clean(_pdf(blocks, pages=2)).blocks] == ["Body text on the page."]
    markdown = ParsedDocument("text/markdown", [Block("The answer is"), Block("42")])
    assert [b.text for b in clean(markdown).blocks] == ["The answer is", "42"]


def test_a_running_header_on_most_pages_is_dropped_where_it_opens_a_page() -> None:
    blocks: list[Block] = []
    for page, word in enumerate(("alpha", "beta", "gamma", "delta", "epsilon", "zeta"), 1):
        blocks.append(Block(f"Debian New Maintainers' Guide {page}", page=page))
        blocks.append(Block(f"The {word} section explains one more step.", page=page))
    blocks.append(Block("This book mentions Debian New Maintainers' Guide 3 in its prose.", page=6))
    kept = [b.text for b in clean(_pdf(blocks, pages=6)).blocks]
    assert not any(t.startswith("Debian New Maintainers") for t in kept)
    assert len(kept) == 7  # every body block, and the prose that only mentions the title


def test_a_line_repeated_on_few_pages_is_kept() -> None:
    blocks = [Block("Summary", page=p) for p in (1, 2)] + [Block(f"Text {p}.", page=p) for p in range(1, 9)]
    assert sum(b.text == "Summary" for b in clean(_pdf(blocks, pages=8)).blocks) == 2


def test_chunks_never_hold_the_noise() -> None:
    doc = _pdf(
        [
            Block("Contents . . . . . . . . . . . . . . 1", page=1),
            Block("Real words about packaging.", page=1),
        ]
        + [Block("7", page=1)],
        pages=1,
    )
    (chunk,) = chunk_document(doc, max_tokens=64, overlap=8)
    assert chunk.text == "Real words about packaging."
