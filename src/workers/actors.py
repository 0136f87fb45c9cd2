"""The pipeline's actors: thin shells that run a stage and send the next messages.

`declare_actors` declares every actor of the product on a broker when a process starts (workers.process):
none is declared at import, so importing a module never needs a broker.
"""

from __future__ import annotations

from uuid import UUID

import dramatiq
import structlog

from ingest.leases import PARSE, embed_unit
from workers import batch_route, callbacks, indexing, leasing, messages, reembed, upgrade
from workers.batch import run_batch
from workers.broker import PERMANENT_ERRORS
from workers.deleted import stops_if_deleted
from workers.embed_stage import embed_stage
from workers.leasing import LeaseLost
from workers.metering import JobDeferred, defer_job
from workers.middleware.context import current_runtime
from workers.parse_stage import parse_stage

log = structlog.get_logger(__name__)


def _skipped(unit: str) -> None:
    # A duplicate message, or one redelivered while its first delivery is still at work elsewhere.
    log.info("stage_skipped", unit=unit, reason="another live worker holds its lease")


def _lost(lost: LeaseLost) -> None:
    # This worker's lease lapsed (it froze, or lost the database) and the unit has another holder: it
    # stops here, having written nothing; the new holder does the work.
    log.warning("lease_lost", unit=lost.lease.unit, generation=lost.lease.generation)


def parse_document(job_id: str) -> None:
    # Log lines carry the job, document, user and stage: workers.middleware.lifecycle binds them for every
    # message.
    rt = current_runtime()
    job_uuid = UUID(job_id)
    try:
        with stops_if_deleted(rt, job_uuid), leasing.holding(rt, job_uuid, PARSE) as lease:
            if lease is None:
                _skipped(PARSE)
                return
            try:
                pending = parse_stage(rt, job_uuid, lease)
            except JobDeferred as deferred:
                defer_job(rt, lease, deferred)
                return
            # Sent while the lease is held: a worker that dies before sending them leaves a lapsing lease,
            # and the sweep's parse_document sends the batches still missing.
            if pending and rt.settings.broker_url is None:
                # In-process, the batches' messages live in this process: the job's `queued` lease lapses
                # with it, and a sweep's parse_document re-sends the batches still missing.
                leasing.hold_queued(rt, [job_uuid])
            for batch in pending:
                messages.actor(messages.EMBED_CHUNKS).send(job_id, batch.first, batch.last)
    except LeaseLost as lost:
        _lost(lost)


def embed_chunks(job_id: str, first: int, last: int) -> None:
    rt = current_runtime()
    job_uuid = UUID(job_id)
    unit = embed_unit(first, last)
    try:
        with stops_if_deleted(rt, job_uuid), leasing.holding(rt, job_uuid, unit) as lease:
            if lease is None:
                _skipped(unit)
                return
            try:
                done = embed_stage(rt, job_uuid, first, last, lease)
            except JobDeferred as deferred:
                defer_job(rt, lease, deferred)
                return
            if done:
                leasing.drop_queued(rt, job_uuid)
                log.info("job_completed")
                upgrade.after_job(rt, job_uuid)
    except LeaseLost as lost:
        _lost(lost)


def ingest_batch(job_ids: list[str]) -> None:
    """Small documents together (workers.batch): each is parsed, chunked and embedded under its own lease,
    their chunks share embedding requests, and one transaction stores them. It never raises for one
    document: a document it cannot finish fails alone (permanent errors) or goes on alone."""
    rt = current_runtime()
    done = run_batch(rt, [UUID(job_id) for job_id in job_ids])
    log.info("batch_done", documents=len(job_ids), completed=len(done))


def declare_actors(broker: dramatiq.Broker) -> None:
    """Declare every actor on `broker`; a worker runs them, a sender finds them by name (workers.messages)."""
    dramatiq.actor(
        actor_name=messages.PARSE_DOCUMENT,
        queue_name=messages.INGEST_QUEUE,
        throws=PERMANENT_ERRORS,
        broker=broker,
    )(parse_document)
    dramatiq.actor(
        actor_name=messages.EMBED_CHUNKS,
        queue_name=messages.INGEST_QUEUE,
        throws=PERMANENT_ERRORS,
        broker=broker,
    )(embed_chunks)
    # No retries of its own: what fails in a batch goes on as its documents' own messages.
    dramatiq.actor(
        actor_name=messages.INGEST_BATCH, queue_name=messages.INGEST_QUEUE, max_retries=0, broker=broker
    )(ingest_batch)
    dramatiq.actor(
        actor_name=messages.TEND_BATCHES, queue_name=messages.INGEST_QUEUE, max_retries=0, broker=broker
    )(batch_route.tend_batches)
    dramatiq.actor(
        actor_name=messages.DELIVER_CALLBACK,
        queue_name=messages.CALLBACK_QUEUE,
        max_retries=callbacks.BACKSTOP_RETRIES,
        broker=broker,
    )(callbacks.deliver_callback)
    dramatiq.actor(
        actor_name=messages.UPGRADE_EMBEDDINGS,
        queue_name=messages.INGEST_QUEUE,
        max_retries=upgrade.MAX_RETRIES,
        broker=broker,
    )(upgrade.upgrade_embeddings)
    dramatiq.actor(
        actor_name=messages.BUILD_VECTOR_INDEX,
        queue_name=messages.INGEST_QUEUE,
        max_retries=indexing.MAX_RETRIES,
        time_limit=indexing.BUILD_TIME_LIMIT_MS,
        broker=broker,
    )(indexing.build_vector_index)
    dramatiq.actor(
        actor_name=messages.REEMBED_STEP,
        queue_name=messages.INGEST_QUEUE,
        max_retries=reembed.MAX_RETRIES,
        broker=broker,
    )(reembed.reembed_step)
