"""`ingest mode show|set`: each service's mode (real, mock, hybrid), stored in the database."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ingest.cli.common import handle_errors, out, session
from router import modes as stored
from router.decide import Mode
from router.modes import SERVICES

mode_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Read or switch the service modes (real, mock, hybrid)."
)


@mode_app.command("show")
@handle_errors
def mode_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The mode of each service."""
    with session() as db:
        modes = stored.read(db.conn)
    if as_json:
        out.print_json(json.dumps({s: m.value for s, m in modes.items()}))
        return
    for service, mode in sorted(modes.items()):
        out.print(f"{service}: {mode.value}")


@mode_app.command("set")
@handle_errors
def mode_set(
    mode: Annotated[Mode, typer.Argument(help="real, mock or hybrid.")],
    service: Annotated[
        str | None, typer.Option("--service", help="llamaparse or openai (default: both).")
    ] = None,
) -> None:
    """Switch a service's mode; every worker and API process sees it at its next job."""
    services = (service,) if service else SERVICES
    with session() as db:
        stored.write(db.conn, mode, services)
    out.print(f"{', '.join(services)}: {mode.value}")
