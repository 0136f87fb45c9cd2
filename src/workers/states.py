"""Job state transitions that span tables: queued → running(stage) → completed | failed | deferred.

A document is `completed` only in the transaction that sees every one of its chunks embedded; a
`failed` document keeps nothing searchable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal
from uuid import UUID

import psycopg

from ingest.logs import redact_value
from ingest.store import chunks, documents, jobs
from workers import callbacks
from workers.runtime import Runtime

# An absolute file path (two folders deep at least), not the path part of a URL (`host/…`, `://`).
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"]+/){2,}[^\s/'\":,)]*")


def one_line(exc: BaseException, limit: int = 500) -> str:
    """A user-facing error: the message alone (no traceback), on one line, bounded, and scrubbed of
    secrets (a driver's message may echo a connection string) and of the server's file paths: it is
    stored, and shown by the CLI and API."""
    text = _SERVER_PATH.sub("<path>", redact_value(" ".join(str(exc).split()))) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fail_job(runtime: Runtime, job_id: UUID | str, error: str) -> bool:
    with runtime.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, UUID(str(job_id)))
        if job is None or job.final:
            return False
        jobs.fail(conn, job.id, error)
        chunks.delete_for_document(conn, job.document_id)
        documents.set_status(conn, job.document_id, "failed", error=error)
        _announce(conn, job.id, job.document_id, "failed")
    return True


def finish_if_done(conn: psycopg.Connection, job_id: UUID) -> bool:
    """Complete the job if every chunk has a vector. Call inside the transaction that stored the last ones.

    The row lock makes concurrent batches take turns here, and each statement after it sees the
    batches committed before, so exactly one of them completes the job.
    """
    job = jobs.lock(conn, job_id)
    if job is None or job.status != "running" or job.chunks_total is None:
        return False
    done, total = jobs.record_progress(conn, job.id, job.document_id)
    if total == 0 or done < total:
        return False
    jobs.complete(conn, job.id)
    documents.set_status(conn, job.document_id, "completed")
    documents.supersede(conn, job.document_id)  # a new version swaps in with this commit
    _announce(conn, job.id, job.document_id, "completed")
    return True


def finish_many(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> list[UUID]:
    """`finish_if_done` for many jobs, set-based; the caller holds their documents (`jobs.hold_documents`)
    in this transaction, which stored their last vectors. Return the jobs completed now."""
    if not job_ids:
        return []
    jobs.lock_many(conn, job_ids)
    done = jobs.complete_when_done(conn, job_ids)
    if not done:
        return []
    document_ids = [document_id for _, document_id in done]
    documents.set_status_many(conn, document_ids, "completed")
    documents.supersede_many(conn, document_ids)  # the new versions swap in with this commit
    callbacks.announce_many(conn, done, "completed")
    return [job_id for job_id, _ in done]


def _announce(
    conn: psycopg.Connection, job_id: UUID, document_id: UUID, outcome: Literal["completed", "failed"]
) -> None:
    """Queue the document's outbound callback, if it has one (the delivery waits for this commit)."""
    callbacks.announce(conn, job_id, document_id, outcome)
