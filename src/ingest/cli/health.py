"""`ingest health`: each dependency and service (database, blobs, broker, each vendor's mode and circuit)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ingest.cli.common import handle_errors, out
from ingest.cli.runtime import runtime
from ingest.services.health import check_all


@handle_errors
def health(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each dependency and service: ok, or why not."""
    with runtime() as rt:
        report = check_all(rt)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        for check in report.checks:
            out.print(f"{check.name}: {'ok' if check.ok else 'FAIL'} {check.detail}".rstrip(), markup=False)
    if not report.ok:
        raise typer.Exit(1)
