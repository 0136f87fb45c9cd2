"""What a parser gives back: the document's text as ordered blocks with their place in it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Block:
    """One structural unit of text: a heading, a paragraph, a list item, a table, a code block.

    `page` is 1-based where the format has pages (PDF, LlamaParse output), else None.
    `heading_path` is the chain of headings the block sits under, outermost first.
    """

    text: str
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    kind: str = "paragraph"  # heading | paragraph | list | table | code


@dataclass(slots=True)
class ParsedDocument:
    media_type: str  # the sniffed type, e.g. "application/pdf", "text/markdown"
    blocks: list[Block]
    pages: int | None = None  # page count where the format has pages
    partial: bool = False  # some of the document could not be read (recorded, not hidden)
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)
