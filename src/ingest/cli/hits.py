"""How `ingest search` shows hits: a table that fits 80 columns, or JSON with every field of the API's."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from ingest.store.search import Hit

SNIPPET_CHARS = 300
# The "where" column: file, pages and headings, folded within this width so the text keeps the rest.
WHERE_WIDTH = 24


def pages(hit: Hit) -> str:
    """ "p. 3", "pp. 3-4", or "" for a document without pages."""
    first, last = hit.page_start, hit.page_end
    if first is None:
        return ""
    return f"p. {first}" if last in (None, first) else f"pp. {first}-{last}"


def where(hit: Hit) -> str:
    lines = [hit.filename, pages(hit), " > ".join(hit.heading_path)]
    return "\n".join(line for line in lines if line)


def table(hits: list[Hit]) -> Table:
    grid = Table(box=box.SIMPLE_HEAD, show_lines=True, pad_edge=False)
    grid.add_column("#", justify="right", no_wrap=True)
    grid.add_column("score", no_wrap=True)
    grid.add_column("where", max_width=WHERE_WIDTH, overflow="fold")
    grid.add_column("text", overflow="fold", ratio=1)
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[:SNIPPET_CHARS] + "…"
        grid.add_row(str(rank), f"{hit.score:.3f}", where(hit), snippet)
    return grid


def as_json(hits: list[Hit]) -> dict[str, Any]:
    return {
        "results": [
            {
                "document_id": str(h.document_id),
                "chunk_id": h.chunk_id,
                "filename": h.filename,
                "score": h.score,
                "page_start": h.page_start,
                "page_end": h.page_end,
                "heading_path": h.heading_path,
                "text": h.text,
                "metadata": h.metadata,
            }
            for h in hits
        ]
    }
