"""`ingest search`: the chunks best matching a query, among the CLI user's documents."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ingest.cli import hits as hits_view
from ingest.cli.common import UserOption, handle_errors, out
from ingest.cli.runtime import cli_user, runtime
from ingest.search_mode import SearchMode
from ingest.services.search import search as run_search
from ingest.store import documents


@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=100, help="How many chunks.")] = 5,
    mode: Annotated[
        SearchMode,
        typer.Option(
            "--mode", help="hybrid (keyword and vector fused), vector or keyword.", case_sensitive=False
        ),
    ] = SearchMode.HYBRID,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    user: UserOption = None,
) -> None:
    """The chunks best matching QUERY, best first, with their file, pages and headings."""
    with runtime() as rt:
        owner = cli_user(rt, user)
        hits = run_search(rt, owner, query, top_k=k, mode=mode)
        if not hits:
            with rt.pool.connection() as conn:
                empty = not documents.list_for_owner(conn, owner.id, limit=1)
    if as_json:
        out.print_json(json.dumps(hits_view.as_json(hits)))
        return
    if not hits:
        # Not an error: nothing matched. Say why when the reason is that there is nothing to search.
        hint = f"; {owner.name} has no documents yet: `ingest add PATH` first" if empty else ""
        out.print(f"no results{hint}", markup=False, highlight=False)
        return
    out.print(hits_view.table(hits))
