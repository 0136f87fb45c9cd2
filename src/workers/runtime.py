"""What a running process holds: settings, the database pool, the blob store and the service router.

The CLI, the API and the workers each open one Runtime and pass it down; nothing else is global.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import structlog
from psycopg_pool import ConnectionPool

from ingest.blobs import BlobStore, build_blob_store
from ingest.config import Settings
from ingest.db.connect import database
from ingest.db.pool import open_pool
from ingest.leases import HeldLeases
from ingest.store.vectors import Space
from router.factory import ServiceRouter

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    conninfo: str
    pool: ConnectionPool
    blobs: BlobStore
    router: ServiceRouter = field(repr=False)
    # Embedding spaces by (model, dimensions), as found: a space, once made, keeps its id and table.
    spaces: dict[tuple[str, int], Space] = field(default_factory=dict, repr=False)
    # A space's estimated vector count and when it was read (monotonic seconds): search's plan choice.
    space_rows: dict[int, tuple[int | None, float]] = field(default_factory=dict, repr=False)
    # The job leases this process holds now (its owner id, for its heartbeat to renew).
    leases: HeldLeases = field(default_factory=HeldLeases, repr=False)
    # The embedded server, held while the Runtime is open: the last process to let go stops it.
    held: ExitStack = field(default_factory=ExitStack, repr=False)

    @classmethod
    def open(cls, settings: Settings | None = None, *, migrate_schema: bool = True) -> Runtime:
        settings = settings or Settings()
        held = ExitStack()
        try:
            conninfo = held.enter_context(database(settings, migrate_schema=migrate_schema))
            pool = open_pool(conninfo, max_size=settings.db_pool_max, timeout=settings.db_wait_s)
            router = ServiceRouter(settings, pool)
        except BaseException:
            held.close()
            raise
        return cls(settings, conninfo, pool, build_blob_store(settings), router, held=held)

    def close(self) -> None:
        self.router.close()
        self.pool.close()
        self.held.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
