"""The parse stage of one document's job: parse and chunk it under its lease, as a plain function over a
Runtime (actors are thin shells around it).

Idempotent, because Dramatiq delivers at least once: skipped when a previous delivery already committed
the chunks (no second vendor call); otherwise the chunks are replaced, never appended.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from costs.meter import Charge, Meter, Reservation
from ingest.chunking import chunk_document
from ingest.db.pool import autocommit
from ingest.errors import UnreadableDocument
from ingest.formats.pages import count_pages
from ingest.leases import PARSE, Lease
from ingest.parsed import Submission
from ingest.store import chunks, documents, jobs
from router.factory import Routed
from router.protocols import Parser, ParseResult, resumes_jobs
from workers import leasing
from workers.metering import billed, metered
from workers.runtime import Runtime
from workers.states import finish_if_done

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Batch:
    first: int
    last: int


def batches(ordinals: list[int], size: int) -> list[Batch]:
    """Group sorted chunk ordinals into batches of at most `size` (ranges may skip embedded ordinals)."""
    return [
        Batch(ordinals[i], ordinals[min(i + size, len(ordinals)) - 1]) for i in range(0, len(ordinals), size)
    ]


def _parsed_by_stand_in(
    rt: Runtime,
    stand_in: Routed[Parser],
    estimate: Charge,
    doc: documents.Document,
    job_id: UUID,
    data: bytes,
) -> tuple[ParseResult, Reservation]:
    """The real parse failed in hybrid: the mock parses the document instead, at a shadow cost."""
    parser, held = metered(
        rt,
        "llamaparse",
        lambda **_: stand_in,
        estimate,
        key=f"{doc.id}:parse",
        stage="parse",
        document_id=doc.id,
        job_id=job_id,
    )
    call = functools.partial(parser.parse, data, filename=doc.filename, media_type=doc.media_type)
    return billed(rt.router.meter, held, call), held


def _remember_submission(rt: Runtime, job_id: UUID, submission: Submission) -> None:
    """`on_submitted`: record the vendor job on the job row the moment it exists, so that a later delivery
    of this stage resumes it rather than paying for another. Best effort: with the database away the parse
    goes on (this delivery will likely finish it); only a redelivery after that would make a new job."""
    try:
        with rt.pool.connection() as conn:
            jobs.record_vendor_submission(conn, job_id, submission)
    except (psycopg.Error, PoolTimeout) as exc:
        error = " ".join(str(exc).split())[:200]
        log.warning("vendor_job_not_recorded", vendor_job_id=submission.job_id, error=error)


def _parse_call(
    rt: Runtime,
    parser: Parser,
    doc: documents.Document,
    job_id: UUID,
    data: bytes,
    recorded: Submission | None,
) -> Callable[[], ParseResult]:
    """The parse, told of the vendor job an earlier delivery made (resumed, not paid twice) and recording
    each new one, when the parser bills per vendor job; a plain call otherwise (the mock)."""
    call = functools.partial(parser.parse, data, filename=doc.filename, media_type=doc.media_type)
    if not resumes_jobs(parser):
        return call
    return functools.partial(
        call, resume=recorded, on_submitted=functools.partial(_remember_submission, rt, job_id)
    )


def parse_stage(rt: Runtime, job_id: UUID, lease: Lease | None = None) -> list[Batch]:
    """Parse and chunk the document under `lease` (taken here when not given; nothing is done while
    another live worker holds the parse); return the embedding batches still to run.

    Its writes that matter (the chunks, the completion) are fenced by the lease, and so is the paid call:
    a worker whose lease lapsed and moved on raises LeaseLost instead."""
    if lease is None:
        with leasing.holding(rt, job_id, PARSE) as taken:
            return [] if taken is None else parse_stage(rt, job_id, taken)
    # The claim is a transaction of its own; what follows are reads and one-statement writes, each
    # committed on its own (no BEGIN and COMMIT round trips around them).
    with autocommit(rt.pool) as conn:
        with conn.transaction():
            job = jobs.claim(conn, job_id, "parse", by=lease.owner)
            leasing.fence(
                conn, lease
            )  # after the claim: a transaction locks the document, job, lease in that order
        if job is None:
            return []
        doc = documents.get(conn, job.document_id)
        if doc is None:
            return []
        documents.set_status(conn, doc.id, "running")
        if job.chunks_total is not None:
            missing = chunks.missing_ordinals(conn, doc.id)
            jobs.set_stage(conn, job.id, "embed")
            if not missing:
                with conn.transaction():
                    finish_if_done(conn, job.id)
                    leasing.fence(conn, lease)
            return batches(missing, rt.settings.embed_batch_chunks)
        recorded = jobs.vendor_submission(conn, job.id)  # a vendor job an earlier delivery made

    log_ = log.bind(job_id=str(job_id), document_id=str(doc.id))
    meter: Meter = rt.router.meter
    data = rt.blobs.get_bytes(doc.sha256)
    estimate = meter.parse_estimate(count_pages(data, filename=doc.filename, media_type=doc.media_type))
    leasing.check(rt, lease)  # a worker that woke after its lease moved on does not pay for a parse
    parser, held = metered(
        rt,
        "llamaparse",
        rt.router.parser,
        estimate,
        key=f"{doc.id}:parse",
        stage="parse",
        document_id=doc.id,
        job_id=job_id,
        holder=lease.token,
        resumes=recorded is not None,
    )
    call = _parse_call(rt, parser, doc, job_id, data, recorded)
    try:
        result = billed(meter, held, call)
    except Exception as failed:
        stand_in = rt.router.parse_fallback(failed)  # hybrid: parsing may fall back freely
        if stand_in is None:
            raise
        result, held = _parsed_by_stand_in(rt, stand_in, estimate, doc, job_id, data)
    usage = result.usage
    meter.settle(
        held,
        meter.parse_actual(
            pages=usage.pages, credits=usage.credits, vendor_job_id=usage.vendor_job_id, estimate=estimate
        ),
    )
    with autocommit(rt.pool) as conn:  # one write and one read
        jobs.set_stage(conn, job_id, "chunk")
        anchors = chunks.anchors_of_replaced(conn, doc.id)  # a new version keeps the old boundaries
    pieces = chunk_document(
        result.document,
        max_tokens=rt.settings.chunk_tokens,
        overlap=rt.settings.chunk_overlap,
        anchors=anchors,
    )
    if not pieces:
        raise UnreadableDocument("no text could be extracted from the document")
    with rt.pool.connection() as conn, conn.transaction():
        running = jobs.is_running(conn, job_id)  # holds the document: a delete waits, or went first
        leasing.fence(conn, lease)  # after the document: the order a delete's cascade locks them in
        if not running:
            return []
        chunks.replace(conn, doc.id, pieces)
        documents.set_parsed(
            conn, doc.id, parser=result.parser, pages=result.document.pages, partial=result.document.partial
        )
        # Parsed for good: the stage moves on and no vendor job is left to resume.
        jobs.set_stage(conn, job_id, "embed", chunks_total=len(pieces), clear_vendor_submission=True)
    log_.info("parsed", parser=result.parser, pages=result.document.pages, chunks=len(pieces))
    return batches(list(range(len(pieces))), rt.settings.embed_batch_chunks)
