"""`ingest serve`: the HTTP API under uvicorn (with no broker set, it also runs the workers in-process)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ingest.cli.common import handle_errors
from ingest.config import Settings
from ingest.logs import configure_logging

SHUTDOWN_GRACE_S = 30


@handle_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    # Imported here: the other commands need neither the web stack nor its start-up cost.
    import uvicorn

    from ingest.api.app import create_app

    settings = Settings()
    configure_logging(settings, interactive=sys.stderr.isatty())
    # The app logs every request itself (structlog, route templates); uvicorn's access log would repeat it.
    # Event streams of deferred jobs can stay open for hours: give them a bound on shutdown.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
