"""The `ingest` command: one Typer app whose commands are loaded when they run (ingest.cli.lazy), so
`ingest --help` and a light command start in a fraction of a second.

Whose documents a command acts on: `--user`, else INGEST_USER (environment or .env), else `local`.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from ingest import __version__
from ingest.cli.lazy import Entry, LazyGroup

COMMANDS = {
    "add": Entry("ingest.cli.add:add", "Ingest files or folders: parse, chunk, embed and store each one."),
    "search": Entry(
        "ingest.cli.search:search", "The chunks best matching QUERY, with their pages and headings."
    ),
    "status": Entry("ingest.cli.inspect:status", "Your jobs and their stage (--all: every user's)."),
    "documents": Entry("ingest.cli.documents:documents_app", "Your documents: list, show, delete."),
    "retry": Entry("ingest.cli.retry:retry", "Run a failed job again."),
    "verify": Entry(
        "ingest.cli.inspect:verify", "Check every completed document has all its chunks and vectors."
    ),
    "health": Entry("ingest.cli.health:health", "Each dependency and service: ok, or why not."),
    "costs": Entry(
        "ingest.cli.costs:costs", "Spent, reserved and limit per service, and what reuse and batching saved."
    ),
    "reembed": Entry(
        "ingest.cli.reembed:reembed", "Re-embed every chunk with another model, then switch searches to it."
    ),
    "budget": Entry("ingest.cli.costs:budget_app", "Daily cost limits: set, show, unset."),
    "mode": Entry("ingest.cli.modes:mode_app", "Read or switch the service modes (real, mock, hybrid)."),
    "keys": Entry("ingest.cli.keys:keys_app", "API keys for the HTTP API: create, list, revoke."),
    "db": Entry("ingest.cli.db:db_app", "Database: schema migrations and a SQL shell (psql)."),
    "serve": Entry("ingest.cli.serve:serve", "Serve the HTTP API (OpenAPI at /docs)."),
    "worker": Entry("ingest.cli.worker:worker", "Dramatiq workers against the configured broker."),
    "mocks": Entry("ingest.cli.worker:mocks_app", "Local stand-ins for the vendor APIs."),
}


class IngestGroup(LazyGroup):
    entries = COMMANDS


app = typer.Typer(
    cls=IngestGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Ingest documents, embed them, search them.",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"ingest {__version__}")
        raise typer.Exit()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C does: context managers close, the embedded PostgreSQL is let go (and stopped when
    # this was its last holder). Python's default for SIGTERM ends the process with no cleanup at all.
    raise SystemExit(128 + signum)


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
