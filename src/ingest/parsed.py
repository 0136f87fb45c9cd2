"""What a parser gives back: the document's text as ordered blocks with their place in it, and the vendor
job a parse made (recorded on the job row so a later delivery resumes it)."""

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


@dataclass(frozen=True, slots=True)
class Submission:
    """A vendor job made for one document's parse, recorded so that a later delivery of the stage resumes
    it instead of paying for another: the vendor bills every job that completes, not our ledger's key."""

    job_id: str
    file_id: str | None = None  # the uploaded file the job reads, reused by a resubmission
    jobs: int = 1  # vendor jobs this parse has made so far, this one included
