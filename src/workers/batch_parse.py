"""The parse of a batch's documents, set-based: what `parse_stage` does for one document, done for all of
them in two transactions instead of a dozen statements and several commits each.

1. One transaction claims every job (documents held, then jobs locked, then leases fenced: the order a
   delete's cascade locks them in) and reads their documents and the anchors of the versions they replace.
2. Each document is parsed by the local parser (a vendor parse is never batched: workers.batch) and
   chunked, outside any transaction.
3. One transaction stores every document's chunks with one COPY, their parse results and job stages with
   one statement each, and the parses' shadow costs with one insert, fenced by the leases: a document
   deleted meanwhile, or whose lease another worker took over, is skipped.

A document that fails to parse or chunk fails alone with its reason (permanent errors) or goes on alone
(any other error), as on the per-document path. Only mock parses are taken this way: a parse routed
anywhere else (deferred, refused) goes through `parse_stage`, one document at a time, with its money.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

import structlog

from costs.meter import Charge, Meter, Shadow
from ingest.chunking import Chunk, chunk_document
from ingest.errors import UnreadableDocument
from ingest.formats.pages import count_pages
from ingest.leases import PARSE, Lease
from ingest.store import chunks, documents, jobs
from ingest.store import leases as lease_store
from router.decide import Choice
from router.protocols import Parser, ParseResult
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Outcome:
    """What the batch's parse left: the jobs with chunks to embed, those chunked by an earlier delivery,
    and each document's failure."""

    parsed: list[UUID] = field(default_factory=list)
    chunked: list[UUID] = field(default_factory=list)
    failed: dict[UUID, Exception] = field(default_factory=dict)


@dataclass(slots=True)
class _Doc:
    job_id: UUID
    document: documents.Document
    anchors: set[bytes]
    result: ParseResult | None = None
    estimate: Charge | None = None
    pieces: list[Chunk] = field(default_factory=list)


def mock_parser(rt: Runtime) -> Parser | None:
    """The parser when it is the mock (a parse with no budget and no wait); None otherwise."""
    routed = rt.router.parser()
    return routed.client if routed.decision.choice is Choice.MOCK else None


def parse_batch(rt: Runtime, parser: Parser, held: dict[UUID, Lease]) -> Outcome:
    """Claim, parse and chunk the jobs of `held` (each under its lease); see the module's docstring."""
    out = Outcome()
    docs, out.chunked = _claim(rt, held)
    meter: Meter = rt.router.meter
    for doc in docs:
        try:
            _parse(rt, meter, parser, doc)
        except Exception as failed:  # noqa: BLE001  (the document fails or goes on alone: workers.batch)
            out.failed[doc.job_id] = failed
    out.parsed += _store(rt, meter, held, [d for d in docs if d.result is not None], out.failed)
    return out


def _claim(rt: Runtime, held: dict[UUID, Lease]) -> tuple[list[_Doc], list[UUID]]:
    """Claim the jobs; return the documents to parse, and the jobs chunked already."""
    job_ids = sorted(held)
    with rt.pool.connection() as conn, conn.transaction():
        present = jobs.hold_documents(conn, job_ids)  # a document deleted meanwhile is not found
        jobs.lock_many(conn, list(present))
        mine = lease_store.holding(conn, [held[job_id] for job_id in present])
        for job_id in set(present) - mine:
            log.warning("lease_lost", job_id=str(job_id), unit=PARSE)
        claimed = jobs.claim_many(conn, sorted(mine), by=rt.leases.owner)
        documents.set_status_many(conn, [job.document_id for job in claimed], "running")
        fresh = [job for job in claimed if job.chunks_total is None]
        found = documents.get_many(conn, [job.document_id for job in fresh])
        anchors = chunks.anchors_of_many(conn, list(found))
    docs = [
        _Doc(job.id, found[job.document_id], anchors.get(job.document_id, set()))
        for job in fresh
        if job.document_id in found
    ]
    return docs, [job.id for job in claimed if job.chunks_total is not None]


def _parse(rt: Runtime, meter: Meter, parser: Parser, doc: _Doc) -> None:
    d = doc.document
    data = rt.blobs.get_bytes(d.sha256)
    estimate = meter.parse_estimate(count_pages(data, filename=d.filename, media_type=d.media_type))
    result = parser.parse(data, filename=d.filename, media_type=d.media_type)
    doc.result, doc.estimate = result, estimate  # parsed: its shadow cost is owed whatever follows
    doc.pieces = chunk_document(
        result.document,
        max_tokens=rt.settings.chunk_tokens,
        overlap=rt.settings.chunk_overlap,
        anchors=doc.anchors,
    )
    if not doc.pieces:
        raise UnreadableDocument("no text could be extracted from the document")


def _store(
    rt: Runtime, meter: Meter, held: dict[UUID, Lease], docs: list[_Doc], failed: dict[UUID, Exception]
) -> list[UUID]:
    """Store the parsed documents' chunks, fenced by their leases; return the jobs stored."""
    if not docs:
        return []
    ok = [d for d in docs if d.job_id not in failed]
    with rt.pool.connection() as conn, conn.transaction():
        running = jobs.hold_documents(conn, [d.job_id for d in docs])
        mine = lease_store.holding(conn, [held[d.job_id] for d in docs if running.get(d.job_id) == "running"])
        for d in ok:
            if d.job_id in running and d.job_id not in mine:
                log.warning("lease_lost", job_id=str(d.job_id), unit=PARSE)
        storing = [d for d in ok if d.job_id in mine]
        chunks.replace_many(conn, {d.document.id: d.pieces for d in storing})
        documents.set_parsed_many(conn, [_parsed(d) for d in storing])
        jobs.set_chunked(conn, {d.job_id: len(d.pieces) for d in storing})
        # Every parse made is charged, stored or not (a document with no text was parsed all the same);
        # a job deleted meanwhile has no rows left to charge against.
        meter.charge_shadows(conn, [_shadow(meter, d) for d in docs if d.job_id in running])
    if storing:  # one line for the batch (a line per document costs more than its share of the work)
        log.info("batch_parsed", documents=len(storing), chunks=sum(len(d.pieces) for d in storing))
    return [d.job_id for d in storing]


def _parsed(doc: _Doc) -> documents.Parsed:
    assert doc.result is not None
    parsed = doc.result.document
    return documents.Parsed(doc.document.id, doc.result.parser, parsed.pages, parsed.partial)


def _shadow(meter: Meter, doc: _Doc) -> Shadow:
    assert doc.result is not None and doc.estimate is not None
    usage = doc.result.usage
    actual = meter.parse_actual(
        pages=usage.pages, credits=usage.credits, vendor_job_id=usage.vendor_job_id, estimate=doc.estimate
    )
    return Shadow(
        key=f"{doc.document.id}:parse",
        service="llamaparse",
        stage="parse",
        estimate=doc.estimate,
        actual=actual,
        document_id=doc.document.id,
        job_id=doc.job_id,
    )
