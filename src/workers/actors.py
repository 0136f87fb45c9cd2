"""The pipeline's actors: thin shells that run a stage and send the next messages."""

from __future__ import annotations

from uuid import UUID

import dramatiq
import structlog

from ingest.runtime import Runtime
from ingest.store import documents, jobs
from workers.broker import PERMANENT_ERRORS, broker
from workers.callbacks import deliver_callback  # noqa: F401  (declares the callback actor in every worker)
from workers.context import current_runtime
from workers.deleted import stops_if_deleted
from workers.pipeline import Batch, JobDeferred, embed_stage, parse_stage
from workers.upgrade import after_job  # also declares the upgrade actor in every worker

log = structlog.get_logger(__name__)
QUEUE = "ingest"


def _defer(rt: Runtime, job_id: UUID, deferred: JobDeferred) -> None:
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, job_id)
        if job is None or job.final:
            return
        jobs.defer(conn, job_id, str(deferred), deferred.delay_s)
        documents.set_status(conn, job.document_id, "deferred")
    parse_document.send_with_options(args=(str(job_id),), delay=deferred.delay_s * 1000)
    log.info("job_deferred", job_id=str(job_id), reason=str(deferred), delay_s=deferred.delay_s)


@dramatiq.actor(queue_name=QUEUE, throws=PERMANENT_ERRORS, broker=broker)
def parse_document(job_id: str) -> None:
    # Log lines carry the job, document, user and stage: workers.lifecycle binds them for every message.
    rt = current_runtime()
    job_uuid = UUID(job_id)
    pending: list[Batch] = []
    try:
        with stops_if_deleted(rt, job_uuid):
            pending = parse_stage(rt, job_uuid)
    except JobDeferred as deferred:
        _defer(rt, job_uuid, deferred)
        return
    for batch in pending:
        embed_chunks.send(job_id, batch.first, batch.last)


@dramatiq.actor(queue_name=QUEUE, throws=PERMANENT_ERRORS, broker=broker)
def embed_chunks(job_id: str, first: int, last: int) -> None:
    rt = current_runtime()
    job_uuid = UUID(job_id)
    try:
        with stops_if_deleted(rt, job_uuid):
            if embed_stage(rt, job_uuid, first, last):
                log.info("job_completed")
                after_job(rt, job_uuid)
    except JobDeferred as deferred:
        _defer(rt, job_uuid, deferred)
