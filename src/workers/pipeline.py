"""The stages of one document's job, as plain functions over a Runtime. Actors are thin shells around these.

Each stage is idempotent, because Dramatiq delivers at least once:
- parse: skipped when a previous delivery already committed the chunks (no second vendor call);
  otherwise the chunks are replaced, never appended.
- embed: a batch only embeds chunks that have no vector yet and replaces any vector it writes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import numpy as np
import psycopg
import structlog
from psycopg_pool import PoolTimeout

from costs import savings
from costs.meter import BudgetExhausted, Charge, Meter, Reservation
from ingest.chunking import chunk_document
from ingest.db.pool import autocommit
from ingest.errors import ServiceUnavailable, UnreadableDocument
from ingest.formats.pages import count_pages
from ingest.leases import PARSE, Lease, embed_unit
from ingest.parsed import Submission
from ingest.store import chunks, documents, jobs, reuse, spaces, upgrades, vectors
from ingest.store.vectors import Space
from router.decide import Choice, Decision
from router.factory import Client, Routed, Target
from router.guarded import awaits_upgrade
from router.protocols import Embedder, EmbedResult, Parser, ParseResult, resumes_jobs
from workers import batch_route, billing, indexing, leasing, messages
from workers.middleware.metrics import CHUNKS_EMBEDDED, DOCUMENTS_COMPLETED
from workers.runtime import Runtime
from workers.states import finish_if_done

log = structlog.get_logger(__name__)

# How long a job waits before trying again when a service in real mode cannot serve it now.
DEFER_RETRY_S = 60


class JobDeferred(Exception):
    def __init__(self, reason: str, delay_s: int = DEFER_RETRY_S) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


def defer_job(rt: Runtime, lease: Lease, deferred: JobDeferred) -> None:
    """Mark the job deferred (its stage cannot be served now) and send its delayed `parse_document`."""
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, lease.job_id)  # document, then job, then (fence) lease: a delete's order
        if job is None or job.final:
            return
        leasing.fence(conn, lease)
        jobs.defer(conn, job.id, str(deferred), deferred.delay_s)
        documents.set_status(conn, job.document_id, "deferred")
    messages.actor(messages.PARSE_DOCUMENT).send_with_options(
        args=(str(lease.job_id),), delay=deferred.delay_s * 1000
    )
    log.info("job_deferred", job_id=str(lease.job_id), reason=str(deferred), delay_s=deferred.delay_s)


@dataclass(frozen=True, slots=True)
class Batch:
    first: int
    last: int


def batches(ordinals: list[int], size: int) -> list[Batch]:
    """Group sorted chunk ordinals into batches of at most `size` (ranges may skip embedded ordinals)."""
    return [
        Batch(ordinals[i], ordinals[min(i + size, len(ordinals)) - 1]) for i in range(0, len(ordinals), size)
    ]


def _served(routed: Routed[Client]) -> Client:
    decision: Decision = routed.decision
    if decision.choice is Choice.DEFER:
        raise JobDeferred(decision.reason)
    if decision.choice is Choice.FAIL or routed.client is None:
        raise ServiceUnavailable(decision.reason)
    return routed.client


def metered(
    rt: Runtime,
    service: str,
    route: Callable[..., Routed[Client]],
    estimate: Charge,
    *,
    key: str,
    stage: str,
    document_id: UUID | None,
    job_id: UUID | None,
    holder: str | None = None,
) -> tuple[Client, Reservation]:
    """Route one billable call and hold its estimate before anyone is called (under the job lease
    `holder`, when the call is a stage's).

    A real call reserves against today's budget, a mock call records its shadow cost. When the budget
    cannot take the estimate, hybrid falls back to mock and real defers the job to the next budget day.
    """
    meter: Meter = rt.router.meter
    reserve = functools.partial(
        meter.reserve,
        key=key,
        service=service,
        stage=stage,
        estimate=estimate,
        document_id=document_id,
        job_id=job_id,
        holder=holder,
    )
    routed = route()
    if routed.decision.choice is Choice.DEFER and not meter.budget_ok(service):
        raise JobDeferred(routed.decision.reason, delay_s=meter.seconds_to_next_day())
    client = _served(routed)
    try:
        return client, reserve(simulated=routed.decision.choice is Choice.MOCK)
    except BudgetExhausted as refused:
        routed = route(budget_ok=False)
        if routed.decision.choice is Choice.DEFER:
            raise JobDeferred(str(refused), delay_s=refused.delay_s) from None
        return _served(routed), reserve(simulated=True)


Result = TypeVar("Result")


def billed(meter: Meter, held: Reservation, call: Callable[[], Result]) -> Result:
    """Make the call. If it fails, the reservation goes back, unless the vendor may have billed it: then it
    is charged as `unknown` (workers.billing)."""
    try:
        return call()
    except BaseException as failed:
        billing.after_failure(meter, held, failed)
        raise


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


def cached_in(
    rt: Runtime, embedder: Embedder | None, document_id: UUID, pending: list[chunks.StoredChunk]
) -> tuple[Space | None, set[bytes]]:
    """The embedder's space, and which of the pending texts its cache already holds for the owner."""
    if embedder is None:  # the call will be deferred or refused: no space to look in
        return None, set()
    with autocommit(rt.pool) as conn:  # reads only
        space = vectors.find_space(conn, embedder.model, embedder.dimensions)
        hashes = [c.text_hash for c in pending]
        return space, reuse.cached(conn, space, document_id, hashes) if space else set()


def misses_of(pending: list[chunks.StoredChunk], hits: set[bytes]) -> dict[bytes, chunks.StoredChunk]:
    """The first chunk of each text the cache lacks: a text repeated in a batch is embedded once."""
    first: dict[bytes, chunks.StoredChunk] = {}
    for c in pending:
        if c.text_hash not in hits:
            first.setdefault(c.text_hash, c)
    return first


def same_space(a: Embedder | None, b: Embedder) -> bool:
    return a is not None and (a.model, a.dimensions) == (b.model, b.dimensions)


def embed_stage(rt: Runtime, job_id: UUID, first: int, last: int, lease: Lease | None = None) -> bool:
    """Embed and store the chunks of one batch under `lease` (taken here when not given; nothing is done
    while another live worker holds the batch); return True when this batch completed the job.

    Texts the space's cache holds are not sent: only the misses are reserved, embedded and charged
    (each distinct text once), and the reuse is recorded as a saving with the vectors. The paid call and
    the transaction that stores the vectors (and completes the job) are fenced by the lease.
    """
    if lease is None:
        with leasing.holding(rt, job_id, embed_unit(first, last)) as taken:
            return taken is not None and embed_stage(rt, job_id, first, last, taken)
    if batch_route.wanted(rt, job_id):  # the job's inputs go to the Batch API instead
        return batch_route.enqueue(rt, job_id, lease)
    try:
        return _embed_batch(rt, job_id, first, last, lease, rt.router.target())
    except spaces.SpaceSwitched as switched:
        # `ingest reembed` switched spaces while this batch embedded: embed it again, for the new space.
        log.info("space_switched_under_batch", job_id=str(job_id), reason=str(switched))
        return _embed_batch(rt, job_id, first, last, lease, rt.router.target(fresh=True))


def _batch_key(rt: Runtime, document_id: UUID, first: int, last: int, target: Target) -> str:
    """The ledger key of a batch's call: a model other than the configured one is another call."""
    key = f"{document_id}:embed:{first}-{last}"
    configured = (rt.settings.openai_embedding_model, rt.settings.openai_embedding_dimensions)
    return key if target == configured else f"{key}@{target[0]}/{target[1]}"


def _embed_batch(rt: Runtime, job_id: UUID, first: int, last: int, lease: Lease, target: Target) -> bool:
    with autocommit(rt.pool) as conn:  # reads only
        job = jobs.get(conn, job_id)
        if job is None or job.status != "running":
            return False
        pending = chunks.pending_in_range(conn, job.document_id, first, last)
    if not pending:
        with rt.pool.connection() as conn, conn.transaction():
            done = finish_if_done(conn, job_id)
            leasing.fence(conn, lease)
            return done
    meter: Meter = rt.router.meter
    key = _batch_key(rt, job.document_id, first, last, target)
    route = functools.partial(rt.router.embedder, target=target)
    embedder = route().client
    space, hits = cached_in(rt, embedder, job.document_id, pending)
    misses = misses_of(pending, hits)
    result = None
    if misses:
        leasing.check(rt, lease)  # a worker that woke after its lease moved on does not pay for the batch
        client, held = metered(
            rt,
            "openai",
            route,
            meter.embed_charge(sum(c.token_count for c in misses.values()), model=target[0]),
            key=key,
            stage="embed",
            document_id=job.document_id,
            job_id=job_id,
            holder=lease.token,
        )
        if not same_space(embedder, client):  # the budget sent the call to another space: look there
            embedder = client
            space, hits = cached_in(rt, client, job.document_id, pending)
            misses = misses_of(pending, hits)
        texts = [c.text for c in misses.values()]
        if texts:
            try:
                result = billed(meter, held, functools.partial(client.embed, texts))
            except Exception as failed:
                stand_in = rt.router.embed_fallback(failed)  # hybrid: the mock stands in for this batch
                if stand_in is None:
                    raise
                embedder, space, hits, misses, result = _stood_in(rt, stand_in, job, key, pending)
            else:
                charge = meter.embed_charge(
                    result.billed_tokens, requests=result.billed_requests, model=target[0]
                )
                meter.settle(held, charge)
        else:
            meter.release(held)
    assert embedder is not None  # hits need a space, misses a client
    if space is None:  # nothing was cached, so this batch made the vectors: `result` is set
        assert result is not None
        with rt.pool.connection() as conn:
            space = vectors.ensure_space(
                conn,
                embedder.model,
                embedder.dimensions,
                simulated=result.simulated,
                index_kind=rt.settings.vector_index,
            )
    space = indexing.before_write(rt, space)  # a large backlog loads without index maintenance
    with rt.pool.connection() as conn, conn.transaction():
        running = jobs.is_running(conn, job_id)
        # After the document is held (a delete's cascade locks document, job, lease in that order): another
        # worker took the batch over, so this one stores nothing.
        leasing.fence(conn, lease)
        if not running:
            # The job failed (its chunks deleted) or went while this batch embedded: nothing to store.
            return False
        spaces.check_writable(conn, space)  # before any chunk is written: a switch's lock order
        saved = store_vectors(conn, space, pending, hits, misses, None if result is None else result.vectors)
        if awaits_upgrade(embedder):  # mock vectors standing in for real ones: the upgrade job replaces them
            upgrades.mark(conn, [c.id for c in pending])
        record_saving(
            conn, meter, space, saved, key=key, document_id=job.document_id, job_id=job_id, model=target[0]
        )
        done = finish_if_done(conn, job_id)
    CHUNKS_EMBEDDED.inc(len(pending))
    if done:
        DOCUMENTS_COMPLETED.inc()
    indexing.after_write(rt, space)
    return done


def record_saving(
    conn: psycopg.Connection,
    meter: Meter,
    space: Space,
    saved: list[chunks.StoredChunk],
    *,
    key: str,
    document_id: UUID,
    job_id: UUID,
    model: str | None = None,
) -> None:
    """Record what the cache (or a text repeated in the call) saved: the chunks no call was made for,
    priced at `model` (default: the configured one)."""
    if not saved:
        return
    tokens = sum(c.token_count for c in saved)
    saving = savings.Saving(
        key=key,
        service="openai",
        simulated=space.simulated,
        day=meter.today(),
        chunks=len(saved),
        tokens=tokens,
        usd=meter.embed_charge(tokens, model=model).usd,
        price_version=meter.prices.version,
        document_id=document_id,
        job_id=job_id,
    )
    savings.record(conn, saving)


def _stood_in(
    rt: Runtime, stand_in: Routed[Embedder], job: jobs.Job, key: str, pending: list[chunks.StoredChunk]
) -> tuple[Embedder, Space | None, set[bytes], dict[bytes, chunks.StoredChunk], EmbedResult | None]:
    """The batch's real call failed in hybrid: the mock embeds it in its own space (a shadow cost), and the
    chunks will wait for upgrade. The mock space has its own cache, so hits and misses are looked up anew."""
    embedder = _served(stand_in)
    space, hits = cached_in(rt, embedder, job.document_id, pending)
    misses = misses_of(pending, hits)
    if not misses:
        return embedder, space, hits, misses, None
    meter: Meter = rt.router.meter
    _, held = metered(
        rt,
        "openai",
        lambda **_: stand_in,
        meter.embed_charge(sum(c.token_count for c in misses.values())),
        key=key,
        stage="embed",
        document_id=job.document_id,
        job_id=job.id,
    )
    result = billed(meter, held, functools.partial(embedder.embed, [c.text for c in misses.values()]))
    meter.settle(held, meter.embed_charge(result.billed_tokens, requests=result.billed_requests))
    return embedder, space, hits, misses, result


def store_vectors(
    conn: psycopg.Connection,
    space: Space,
    pending: list[chunks.StoredChunk],
    hits: set[bytes],
    misses: dict[bytes, chunks.StoredChunk],
    made: np.ndarray | None,
) -> list[chunks.StoredChunk]:
    """Store every pending chunk's vector (cached, or `made`: one row per miss, in order); return the
    chunks no call was made for."""
    served = set(reuse.copy_cached(conn, space, [c.id for c in pending if c.text_hash in hits]))
    fresh = [c for c in pending if c.text_hash in misses]
    if fresh:
        assert made is not None  # misses are what was sent
        row = {h: i for i, h in enumerate(misses)}
        ids = [c.id for c in fresh]
        vectors.write(conn, space, ids, made[[row[c.text_hash] for c in fresh]])
        reuse.remember(conn, space, ids)
    chunks.mark_embedded(conn, [*served, *(c.id for c in fresh)], space.id)
    # Not sent: texts the cache served, and repeats of a text sent once.
    return [c for c in pending if c.id in served] + [c for c in fresh if misses[c.text_hash] is not c]
