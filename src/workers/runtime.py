"""What a running process holds: settings, the database pool, the blob store and the service router.

The CLI, the API and the workers each open one Runtime and pass it down; nothing else is global.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from psycopg_pool import ConnectionPool

from ingest.blobs import BlobStore, build_blob_store
from ingest.config import Settings
from ingest.db import embedded, migrate
from ingest.db.pool import open_pool
from ingest.store.vectors import Space
from router.factory import ServiceRouter

log = structlog.get_logger(__name__)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return embedded.start(settings.pgdata_dir)


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

    @classmethod
    def open(cls, settings: Settings | None = None, *, migrate_schema: bool = True) -> Runtime:
        settings = settings or Settings()
        settings.home.mkdir(parents=True, exist_ok=True)
        conninfo = resolve_database_url(settings)
        if migrate_schema:
            migrate.apply(conninfo)
        pool = open_pool(conninfo, max_size=settings.db_pool_max, timeout=settings.db_wait_s)
        router = ServiceRouter(settings, pool)
        return cls(settings, conninfo, pool, build_blob_store(settings), router)

    def close(self) -> None:
        self.router.close()
        self.pool.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
