"""Reaching the database: DATABASE_URL, or the embedded server under INGEST_HOME (started, or joined when
another process holds it), with the schema migrated. What a Runtime opens first, and all a read-only
command needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from ingest.config import Settings
from ingest.db import embedded, migrate


@contextmanager
def database(settings: Settings, *, migrate_schema: bool = True) -> Iterator[str]:
    """The connection URI until leaving; the embedded server is let go on leaving (stopped when this was
    its last holder)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        conninfo = settings.database_url or held.enter_context(embedded.hold(settings.pgdata_dir))
        if migrate_schema:
            migrate.apply(conninfo)
        yield conninfo
