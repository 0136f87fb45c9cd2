"""`ingest search`: the chunks nearest to a query, among the CLI user's documents."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ingest.cli.common import UserOption, cli_user, handle_errors, out, runtime
from ingest.services.search import search as run_search
from ingest.store import documents


@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=100, help="How many chunks.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    user: UserOption = None,
) -> None:
    """The chunks nearest to QUERY, best first."""
    with runtime() as rt:
        owner = cli_user(rt, user)
        hits = run_search(rt, owner, query, top_k=k)
        if not hits:
            with rt.pool.connection() as conn:
                empty = not documents.list_for_owner(conn, owner.id, limit=1)
    if as_json:
        rows = [
            {
                "document_id": str(h.document_id),
                "chunk_id": h.chunk_id,
                "filename": h.filename,
                "score": h.score,
                "text": h.text,
                "metadata": h.metadata,
            }
            for h in hits
        ]
        out.print_json(json.dumps({"results": rows}))
        return
    if not hits:
        # Not an error: nothing matched. Say why when the reason is that there is nothing to search.
        hint = f"; {owner.name} has no documents yet: `ingest add PATH` first" if empty else ""
        out.print(f"no results{hint}", markup=False, highlight=False)
        return
    table = Table(show_lines=True)
    for column in ("#", "score", "document", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        snippet = " ".join(hit.text.split())
        table.add_row(
            str(rank), f"{hit.score:.3f}", hit.filename, snippet[:300] + ("…" if len(snippet) > 300 else "")
        )
    out.print(table)
