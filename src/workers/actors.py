"""The pipeline's actors: thin shells that run a stage and send the next messages.

`declare_actors` declares every actor of the product on a broker when a process starts (workers.process):
none is declared at import, so importing a module never needs a broker.
"""

from __future__ import annotations

from uuid import UUID

import dramatiq
import structlog

from ingest.store import documents, jobs
from workers import callbacks, indexing, messages, upgrade
from workers.broker import PERMANENT_ERRORS
from workers.deleted import stops_if_deleted
from workers.middleware.context import current_runtime
from workers.pipeline import Batch, JobDeferred, embed_stage, parse_stage
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
QUEUE = "ingest"


def _defer(rt: Runtime, job_id: UUID, deferred: JobDeferred) -> None:
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, job_id)
        if job is None or job.final:
            return
        jobs.defer(conn, job_id, str(deferred), deferred.delay_s)
        documents.set_status(conn, job.document_id, "deferred")
    messages.actor(messages.PARSE_DOCUMENT).send_with_options(
        args=(str(job_id),), delay=deferred.delay_s * 1000
    )
    log.info("job_deferred", job_id=str(job_id), reason=str(deferred), delay_s=deferred.delay_s)


def parse_document(job_id: str) -> None:
    # Log lines carry the job, document, user and stage: workers.middleware.lifecycle binds them for every
    # message.
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
        messages.actor(messages.EMBED_CHUNKS).send(job_id, batch.first, batch.last)


def embed_chunks(job_id: str, first: int, last: int) -> None:
    rt = current_runtime()
    job_uuid = UUID(job_id)
    try:
        with stops_if_deleted(rt, job_uuid):
            if embed_stage(rt, job_uuid, first, last):
                log.info("job_completed")
                upgrade.after_job(rt, job_uuid)
    except JobDeferred as deferred:
        _defer(rt, job_uuid, deferred)


def declare_actors(broker: dramatiq.Broker) -> None:
    """Declare every actor on `broker`; a worker runs them, a sender finds them by name (workers.messages)."""
    dramatiq.actor(
        actor_name=messages.PARSE_DOCUMENT, queue_name=QUEUE, throws=PERMANENT_ERRORS, broker=broker
    )(parse_document)
    dramatiq.actor(
        actor_name=messages.EMBED_CHUNKS, queue_name=QUEUE, throws=PERMANENT_ERRORS, broker=broker
    )(embed_chunks)
    dramatiq.actor(
        actor_name=messages.DELIVER_CALLBACK,
        queue_name=callbacks.QUEUE,
        max_retries=callbacks.BACKSTOP_RETRIES,
        broker=broker,
    )(callbacks.deliver_callback)
    dramatiq.actor(
        actor_name=messages.UPGRADE_EMBEDDINGS,
        queue_name=upgrade.QUEUE,
        max_retries=upgrade.MAX_RETRIES,
        broker=broker,
    )(upgrade.upgrade_embeddings)
    dramatiq.actor(
        actor_name=messages.BUILD_VECTOR_INDEX,
        queue_name=indexing.QUEUE,
        max_retries=indexing.MAX_RETRIES,
        time_limit=indexing.BUILD_TIME_LIMIT_MS,
        broker=broker,
    )(indexing.build_vector_index)
