"""The `ingest` command: one Typer app, commands grouped as the contract lists them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ingest.cli import costs as costs_cmds
from ingest.cli import hits as hits_view
from ingest.cli import inspect as inspect_cmds
from ingest.cli.add import print_summary, run_add
from ingest.cli.common import DEFAULT_USER, cli_user, handle_errors, out, runtime
from ingest.cli.keys import keys_app
from ingest.cli.serve import serve
from ingest.cli.worker import mocks_app, worker
from ingest.config import Settings
from ingest.db import migrate
from ingest.search_mode import SearchMode
from ingest.services.search import search as run_search
from router.decide import Mode
from router.modes import SERVICES
from workers.runtime import resolve_database_url

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ingest documents, embed them, search them.")
mode_app = typer.Typer(no_args_is_help=True, help="Read or switch the service modes (real, mock, hybrid).")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(mode_app, name="mode")
app.add_typer(db_app, name="db")
app.add_typer(mocks_app, name="mocks")
app.add_typer(costs_cmds.budget_app, name="budget")
app.add_typer(keys_app, name="keys")

UserOption = Annotated[str, typer.Option("--user", help="Whose documents.")]


@app.command()
@handle_errors
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursively).")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return when every job has ended.")] = True,
    user: UserOption = DEFAULT_USER,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print the quote (pages, tokens, dollars) and ingest nothing.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Each file is a new version of your document with the same filename: it replaces it"
            " once ingested (search sees the old version until then).",
        ),
    ] = False,
) -> None:
    """Ingest files or folders: parse, chunk, embed and store each one."""
    if estimate:
        costs_cmds.estimate(paths)
        return
    with runtime(workers=True) as rt:
        outcomes = run_add(rt, paths, cli_user(rt, user), wait=wait, replace=replace)
    print_summary(outcomes)
    if any(o.status not in ("completed", "duplicate") for o in outcomes):
        raise typer.Exit(1)


@app.command()
@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=100, help="How many chunks.")] = 5,
    mode: Annotated[
        SearchMode,
        typer.Option("--mode", help="hybrid (keyword and vector fused), vector or keyword.", case_sensitive=False),
    ] = SearchMode.HYBRID,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    user: UserOption = DEFAULT_USER,
) -> None:
    """The chunks best matching QUERY, best first, with their file, pages and headings."""
    with runtime() as rt:
        hits = run_search(rt, cli_user(rt, user), query, top_k=k, mode=mode)
    if as_json:
        out.print_json(json.dumps(hits_view.as_json(hits)))
        return
    if not hits:
        out.print("no results")
        return
    out.print(hits_view.table(hits))


app.command()(inspect_cmds.status)
app.command()(inspect_cmds.retry)
app.command()(inspect_cmds.verify)
app.command()(inspect_cmds.health)
app.command()(costs_cmds.costs)
app.command()(worker)
app.command()(serve)


@db_app.command("migrate")
@handle_errors
def db_migrate() -> None:
    """Apply schema migrations (also applied on start)."""
    applied = migrate.apply(resolve_database_url(Settings()))
    out.print(f"applied {', '.join(map(str, applied))}" if applied else "schema is up to date")


@mode_app.command("show")
@handle_errors
def mode_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The mode of each service."""
    with runtime() as rt:
        modes = rt.router.modes.all()
    if as_json:
        out.print_json(json.dumps({s: m.value for s, m in modes.items()}))
        return
    for service, mode in sorted(modes.items()):
        out.print(f"{service}: {mode.value}")


@mode_app.command("set")
@handle_errors
def mode_set(
    mode: Annotated[Mode, typer.Argument(help="real, mock or hybrid.")],
    service: Annotated[str | None, typer.Option("--service", help="llamaparse or openai (default: both).")] = None,
) -> None:
    """Switch a service's mode; every worker and API process sees it at its next job."""
    services = (service,) if service else SERVICES
    with runtime() as rt:
        rt.router.modes.set(mode, services)
    out.print(f"{', '.join(services)}: {mode.value}")

