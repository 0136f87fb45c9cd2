"""Deleting a document: its rows at once, its blob once no document of any user names it.

The rows go in one transaction (jobs, chunks and vectors with the document, ON DELETE CASCADE). Workers
hold a document before they lock its job or write its chunks (`store.jobs.is_running`, `store.jobs.lock`),
the order the delete takes them in, so a delete racing work waits for the worker's transaction or goes
first. A deadlock that something else still causes is retried; the delete then answers 404 when the
document went meanwhile, 409 when it stayed busy, never an internal error.
"""

from __future__ import annotations

from uuid import UUID

import structlog
from psycopg import errors as pg_errors
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from ingest.errors import Conflict, NotFound
from ingest.store import blob_refs, documents
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

_RACES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)
_ATTEMPTS = 5


def delete_document(rt: Runtime, document_id: UUID, *, owner_id: int) -> bool:
    """Delete the owner's document; return whether its blob went too (no other document needs it).

    NotFound: the owner has no such document (or it was deleted meanwhile); Conflict: it stayed locked by
    racing work through every retry."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(_RACES),
            stop=stop_after_attempt(_ATTEMPTS),
            wait=wait_random(0.01, 0.2),
        ):
            with attempt:
                sha256 = _delete_rows(rt, document_id, owner_id)
    except RetryError as busy:
        error = str(busy.last_attempt.exception())
        log.warning("document_delete_busy", document_id=str(document_id), error=error)
        raise Conflict(f"document {document_id} is busy; try the delete again") from None
    if sha256 is None:
        raise NotFound(f"no document {document_id}")
    return release_blob(rt, sha256)


def _delete_rows(rt: Runtime, document_id: UUID, owner_id: int) -> str | None:
    with rt.pool.connection() as conn, conn.transaction():
        if documents.get(conn, document_id, owner_id=owner_id) is None:
            return None
        return documents.delete(conn, document_id)


def release_blob(rt: Runtime, sha256: str) -> bool:
    """Remove the blob if no document names it; return whether it was removed. Under the blob's lock,
    which an upload of the same bytes holds until its document is committed with the bytes stored."""
    with rt.pool.connection() as conn, conn.transaction():
        blob_refs.lock(conn, sha256)
        if blob_refs.in_use(conn, sha256):
            return False
        rt.blobs.delete(sha256)
    return True
