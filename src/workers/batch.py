"""Small documents together: one message takes many documents through parse, chunk and embed.

Every document keeps its own job, parse lease, reservation and verdict in PostgreSQL, as when it travels
alone (workers.parse_stage, workers.embed_stage). What a batch shares is the message, the embedding call (the texts of all its
documents; the client splits them only at the API's per-request limits) and the transaction that stores
their vectors and completes their jobs. So:
- a redelivered batch redoes only what is not committed: a document already chunked is not parsed again,
  and only chunks without a vector are embedded;
- a permanent error fails its document alone, with its reason; any other error sends that document its
  own `parse_document` (the per-document path and its retries), which resumes where it stopped;
- each document reserves its own share of the shared call, in order: when the budget refuses one, it and
  the rest are deferred, and those already reserved go on, so a budget is never overshot.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np
import psycopg
import structlog

from costs.meter import Meter, Reservation
from ingest.leases import PARSE, Lease
from ingest.store import chunks, jobs, reuse, spaces, upgrades, vectors
from ingest.store import leases as lease_store
from ingest.store.vectors import Space
from router.factory import Target
from router.guarded import awaits_upgrade
from router.protocols import Embedder
from workers import batch_route, billing, indexing, leasing, messages, upgrade
from workers.batch_plan import shares
from workers.broker import PERMANENT_ERRORS
from workers.deleted import stops_if_deleted
from workers.embed_stage import cached_in, misses_of, record_saving, same_space, store_vectors
from workers.leasing import LeaseLost
from workers.metering import JobDeferred, defer_job, metered
from workers.middleware.metrics import CHUNKS_EMBEDDED, DOCUMENTS_COMPLETED
from workers.parse_stage import parse_stage
from workers.runtime import Runtime
from workers.states import fail_job, finish_if_done, one_line

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Doc:
    """One document of the batch on its way to the shared embedding call."""

    lease: Lease
    document_id: UUID
    pending: list[chunks.StoredChunk]
    hits: set[bytes] = field(default_factory=set)
    misses: dict[bytes, chunks.StoredChunk] = field(default_factory=dict)
    held: Reservation | None = None
    made: np.ndarray | None = None
    model: str | None = None  # the real model its call is priced at (reembed's target; None: configured)

    @property
    def job_id(self) -> UUID:
        return self.lease.job_id

    @property
    def key(self) -> str:
        ordinals = [c.ordinal for c in self.pending]
        key = f"{self.document_id}:embed:{min(ordinals)}-{max(ordinals)}"
        return key if self.model is None else f"{key}@{self.model}"


@dataclass(slots=True)
class _Call:
    """Documents whose misses one embedder serves in one call (hybrid may serve some from the mock)."""

    embedder: Embedder
    space: Space | None
    docs: list[_Doc] = field(default_factory=list)


def run_batch(rt: Runtime, job_ids: Sequence[UUID]) -> list[UUID]:
    """Take the jobs through parse, chunk and embed together; return the jobs this batch completed."""
    if rt.router.parses_remotely():
        # The parser turned to the vendor since admission: each parse would wait on LlamaParse in turn,
        # under one message's time limit, holding the other documents back. Each goes alone.
        for job_id in job_ids:
            messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))
        return []
    held = leasing.take_many(rt, job_ids, PARSE)
    for job_id in set(job_ids) - set(held):
        log.info(
            "stage_skipped", job_id=str(job_id), unit=PARSE, reason="another live worker holds its lease"
        )
    try:
        parsed = [lease for job_id in job_ids if (lease := _parsed(rt, job_id, held)) is not None]
        try:
            done = _embedded(rt, parsed, held) if parsed else []
        except Exception as failed:  # noqa: BLE001  (a deadlock victim, the database away: each goes alone)
            for lease in parsed:
                _hand_off(rt, held, lease.job_id, failed)
            done = []
    finally:
        leasing.release(rt, *held.values())
    if done:
        leasing.drop_queued(rt, *done)
    for job_id in done:
        upgrade.after_job(rt, job_id)
    return done


def _hand_off(rt: Runtime, held: dict[UUID, Lease], job_id: UUID, failed: BaseException | None) -> None:
    """The document goes on alone: its lease is given back and its own message sent, whose retries and
    fallbacks (and the Batch API route) are the per-document path's."""
    lease = held.pop(job_id, None)
    if lease is not None:
        leasing.release(rt, lease)
    if failed is not None:
        log.warning("batch_document_handed_off", job_id=str(job_id), error=one_line(failed))
    messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))


def _parsed(rt: Runtime, job_id: UUID, held: dict[UUID, Lease]) -> Lease | None:
    """Parse and chunk one document of the batch under its lease; its lease when it has chunks to embed."""
    lease = held.get(job_id)
    if lease is None:
        return None
    try:
        with stops_if_deleted(rt, job_id):
            if not parse_stage(rt, job_id, lease):
                return None
        if batch_route.wanted(rt, job_id):  # its embeddings go to the Batch API: its own embed messages do
            _hand_off(rt, held, job_id, None)
            return None
        return lease
    except JobDeferred as deferred:
        defer_job(rt, lease, deferred)
    except PERMANENT_ERRORS as permanent:
        error = one_line(permanent)
        if fail_job(rt, job_id, error):
            log.warning("job_failed", job_id=str(job_id), error=error)
    except LeaseLost:
        log.warning("lease_lost", job_id=str(job_id), unit=PARSE)
    except Exception as failed:  # noqa: BLE001  (not this batch's to retry: the document goes alone)
        _hand_off(rt, held, job_id, failed)
    return None


def _embedded(rt: Runtime, parsed: list[Lease], held: dict[UUID, Lease]) -> list[UUID]:
    meter: Meter = rt.router.meter
    target = rt.router.target()
    configured = (rt.settings.openai_embedding_model, rt.settings.openai_embedding_dimensions)
    model = None if target == configured else target[0]  # a model other than the configured: another call
    default = rt.router.embedder(target=target).client
    with rt.pool.connection() as conn:  # reads only
        found = chunks.pending_for_jobs(conn, [lease.job_id for lease in parsed])
        space = vectors.find_space(conn, default.model, default.dimensions) if default else None
        docs = [_Doc(lease, *found[lease.job_id]) for lease in parsed if lease.job_id in found]
        wanted = [(d.document_id, c.text_hash) for d in docs for c in d.pending]
        cached = reuse.cached_for_documents(conn, space, wanted) if space else set()
    calls: dict[tuple[str, int, bool], _Call] = {}
    for i, doc in enumerate(docs):
        doc.model = model
        doc.hits = {h for d, h in cached if d == doc.document_id}
        doc.misses = misses_of(doc.pending, doc.hits)
        embedder: Embedder | None = default
        if doc.misses:
            try:
                embedder = _reserve(rt, meter, doc, target)
            except JobDeferred as deferred:  # the budget ran out: this document and the rest wait for it
                for rest in docs[i:]:
                    defer_job(rt, rest.lease, deferred)
                docs = docs[:i]
                break
            if not same_space(default, embedder):  # the budget sent it to another space: look there
                space_of, doc.hits = cached_in(rt, embedder, doc.document_id, doc.pending)
                doc.misses = misses_of(doc.pending, doc.hits)
                calls.setdefault(_identity(embedder), _Call(embedder, space_of)).docs.append(doc)
                continue
        if embedder is None:  # nothing to send and no space: only a completion to record
            embedder = _any_embedder(rt)
        calls.setdefault(_identity(embedder), _Call(embedder, space)).docs.append(doc)
    done: list[UUID] = []
    for call in calls.values():
        done += _call_and_store(rt, meter, call, held)
    return done


def _identity(embedder: Embedder) -> tuple[str, int, bool]:
    return embedder.model, embedder.dimensions, awaits_upgrade(embedder)


def _any_embedder(rt: Runtime) -> Embedder:
    routed = rt.router.embedder(budget_ok=False)
    assert routed.client is not None
    return routed.client


def _reserve(rt: Runtime, meter: Meter, doc: _Doc, target: Target) -> Embedder:
    """Reserve the document's share of the call under its lease; the embedder that will serve it."""
    leasing.check(rt, doc.lease)  # a worker that woke after its lease moved on does not pay
    client, doc.held = metered(
        rt,
        "openai",
        functools.partial(rt.router.embedder, target=target),
        meter.embed_charge(sum(c.token_count for c in doc.misses.values()), model=doc.model),
        key=doc.key,
        stage="embed",
        document_id=doc.document_id,
        job_id=doc.job_id,
        holder=doc.lease.token,
    )
    return client


def _call_and_store(rt: Runtime, meter: Meter, call: _Call, held: dict[UUID, Lease]) -> list[UUID]:
    """One embedding call for the documents' misses, each document's share settled; then one transaction
    stores every vector and completes the jobs that have all of theirs."""
    sending = [d for d in call.docs if d.misses and d.held is not None]
    texts = [c.text for d in sending for c in d.misses.values()]
    space = call.space
    if texts:
        try:
            result = call.embedder.embed(texts)
        except Exception as failed:  # noqa: BLE001  (each document goes on alone, with its retries)
            for doc in sending:
                assert doc.held is not None
                billing.after_failure(meter, doc.held, failed)
                _hand_off(rt, held, doc.job_id, failed)
            return []
        tokens = shares(
            result.billed_tokens, [sum(c.token_count for c in d.misses.values()) for d in sending]
        )
        offset = 0
        for n, (doc, share) in enumerate(zip(sending, tokens, strict=True)):
            assert doc.held is not None
            requests = result.billed_requests if n == 0 else 0  # the call's requests, counted once
            meter.settle(doc.held, meter.embed_charge(share, requests=requests, model=doc.model))
            doc.made = result.vectors[offset : offset + len(doc.misses)]
            offset += len(doc.misses)
        if space is None:
            with rt.pool.connection() as conn:
                space = vectors.ensure_space(
                    conn,
                    call.embedder.model,
                    call.embedder.dimensions,
                    simulated=result.simulated,
                    index_kind=rt.settings.vector_index,
                )
    for doc in call.docs:
        if doc.held is not None and not doc.misses:  # the other space's cache had them all
            meter.release(doc.held)
    if space is not None:
        space = indexing.before_write(rt, space)  # a large backlog loads without index maintenance
    done = _stored(rt, meter, space, call)
    if space is not None:
        indexing.after_write(rt, space)
    return done


def _stored(rt: Runtime, meter: Meter, space: Space | None, call: _Call) -> list[UUID]:
    done: list[UUID] = []
    stored = 0
    with rt.pool.connection() as conn, conn.transaction():
        if space is not None:
            spaces.check_writable(conn, space)  # SpaceSwitched: each document goes on alone, anew
        # Documents in one order, so two transactions that share none still lock alike.
        for doc in sorted(call.docs, key=lambda d: d.document_id):
            if not _still_mine(conn, doc):
                continue
            if doc.pending:
                assert space is not None  # hits need a space, misses made one
                saved = store_vectors(conn, space, doc.pending, doc.hits, doc.misses, doc.made)
                if awaits_upgrade(call.embedder):
                    upgrades.mark(conn, [c.id for c in doc.pending])
                record_saving(
                    conn,
                    meter,
                    space,
                    saved,
                    key=doc.key,
                    document_id=doc.document_id,
                    job_id=doc.job_id,
                    model=doc.model,
                )
                stored += len(doc.pending)
            if finish_if_done(conn, doc.job_id):
                done.append(doc.job_id)
    CHUNKS_EMBEDDED.inc(stored)
    DOCUMENTS_COMPLETED.inc(len(done))
    return done


def _still_mine(conn: psycopg.Connection, doc: _Doc) -> bool:
    """The job still runs (which holds its document: a delete waits, or went first) and its lease is still
    this worker's (checked after the document, the order a delete's cascade locks them in)."""
    if not jobs.is_running(conn, doc.job_id):
        return False
    if not lease_store.holds(conn, doc.lease):
        log.warning("lease_lost", job_id=str(doc.job_id), unit=PARSE)
        return False
    return True
