"""A document deleted while a worker processes it: its job went with it, so the stage stops quietly.

Such a stage trips over the missing rows (a foreign key names the deleted document) or the missing bytes.
When the job is indeed gone, that is the end of it, logged once without a traceback; when it is not,
the error is a real one and goes on to Dramatiq's retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import structlog
from psycopg import errors as pg_errors

from ingest.errors import BlobMissing
from ingest.store import jobs
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

_DELETED_UNDER_US = (pg_errors.ForeignKeyViolation, BlobMissing)


@contextmanager
def stops_if_deleted(rt: Runtime, job_id: UUID) -> Iterator[None]:
    try:
        yield
    except _DELETED_UNDER_US:
        with rt.pool.connection() as conn:
            if jobs.get(conn, job_id) is not None:
                raise
        log.info("job_dropped", reason="its document was deleted while it was processed")
