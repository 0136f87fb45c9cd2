"""The embedding half of a batch of small documents (workers.batch): one call for every document's misses,
then one transaction that stores all their vectors and completes their jobs, set-based.

Money: a mock call (a shadow cost, which holds no budget) reserves nothing before it is made; its shadow
charges, each document's share, are written with one insert in the transaction that stores the vectors,
so they commit together and once. A real call reserves the documents' shares first, together (one
transaction, in order): when the budget refuses one, it and the rest are deferred (or, in hybrid, go to
the mock), and those already reserved go on, so a budget is never overshot; the shares are settled in
one statement after the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import numpy as np
import psycopg
import structlog

from costs.meter import Charge, Meter, Reservation, Shadow, Wanted
from ingest.db.pool import autocommit
from ingest.leases import PARSE, Lease
from ingest.store import chunks, jobs, reuse, spaces, upgrades, vectors
from ingest.store import leases as lease_store
from ingest.store.vectors import Space
from router.decide import Choice
from router.factory import Target
from router.guarded import awaits_upgrade
from router.protocols import Embedder
from workers import billing, indexing, leasing
from workers.batch_plan import shares
from workers.embed_stage import cached_in, misses_of, record_saving, same_space
from workers.metering import JobDeferred, defer_job, metered
from workers.middleware.metrics import CHUNKS_EMBEDDED, DOCUMENTS_COMPLETED
from workers.runtime import Runtime
from workers.states import finish_many

log = structlog.get_logger(__name__)

# A document the batch cannot finish goes on alone: (job, why; None when it is not a failure).
HandOff = Callable[[UUID, BaseException | None], None]


@dataclass(slots=True)
class Doc:
    """One document of the batch on its way to the shared embedding call."""

    lease: Lease
    document_id: UUID
    pending: list[chunks.StoredChunk]
    hits: set[bytes] = field(default_factory=set)
    misses: dict[bytes, chunks.StoredChunk] = field(default_factory=dict)
    held: Reservation | None = None
    made: np.ndarray | None = None
    model: str | None = None  # the real model its call is priced at (reembed's target; None: configured)
    share: int = 0  # the tokens of the call billed to it

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
    shadow: bool = False  # a mock call: no reservations, shadow charges written with the vectors
    docs: list[Doc] = field(default_factory=list)


def embed_batch(rt: Runtime, parsed: list[Lease], hand_off: HandOff) -> list[UUID]:
    """Embed and store the parsed documents' chunks; return the jobs completed."""
    meter: Meter = rt.router.meter
    target = rt.router.target()
    configured = (rt.settings.openai_embedding_model, rt.settings.openai_embedding_dimensions)
    model = None if target == configured else target[0]  # a model other than the configured: another call
    routed = rt.router.embedder(target=target)
    default = routed.client
    with rt.pool.connection() as conn:  # reads only
        found = chunks.pending_for_jobs(conn, [lease.job_id for lease in parsed])
        space = vectors.find_space(conn, default.model, default.dimensions) if default else None
        docs = [Doc(lease, *found[lease.job_id]) for lease in parsed if lease.job_id in found]
        wanted = [(d.document_id, c.text_hash) for d in docs for c in d.pending]
        cached = reuse.cached_for_documents(conn, space, wanted) if space else set()
    for doc in docs:
        doc.model = model
        doc.hits = {h for d, h in cached if d == doc.document_id}
        doc.misses = misses_of(doc.pending, doc.hits)
    if routed.decision.choice is Choice.MOCK and default is not None:
        calls = {_identity(default): _Call(default, space, shadow=True, docs=docs)}
    else:
        if routed.decision.choice is Choice.REAL:
            docs = _reserve_together(rt, meter, docs)
        calls = _reserved_calls(rt, meter, docs, default, space, target)
    done: list[UUID] = []
    for call in calls.values():
        done += _call_and_store(rt, meter, call, hand_off)
    return done


def _reserve_together(rt: Runtime, meter: Meter, docs: list[Doc]) -> list[Doc]:
    """Reserve the documents' shares of a real call in one transaction, in order, up to the first the
    budget refuses (that one and the rest go through `_reserve`, which defers them or, in hybrid, sends
    them to the mock). A document whose lease another worker took over is left out: it pays nothing."""
    with autocommit(rt.pool) as conn:  # one read: a worker that woke after its leases moved on does not pay
        mine = lease_store.holding(conn, [d.lease for d in docs])
    for doc in docs:
        if doc.job_id not in mine:
            log.warning("lease_lost", job_id=str(doc.job_id), unit=PARSE)
    docs = [d for d in docs if d.job_id in mine]
    sending = [d for d in docs if d.misses]
    wanted = [
        Wanted(
            key=d.key,
            service="openai",
            stage="embed",
            estimate=meter.embed_charge(sum(c.token_count for c in d.misses.values()), model=d.model),
            document_id=d.document_id,
            job_id=d.job_id,
            holder=d.lease.token,
        )
        for d in sending
    ]
    for doc, held in zip(sending, meter.reserve_many(wanted), strict=False):
        doc.held = held
    return docs


def _reserved_calls(
    rt: Runtime, meter: Meter, docs: list[Doc], default: Embedder | None, space: Space | None, target: Target
) -> dict[tuple[str, int, bool], _Call]:
    """Reserve each document's share in order (a real call, or one the budget may send elsewhere)."""
    calls: dict[tuple[str, int, bool], _Call] = {}
    for i, doc in enumerate(docs):
        embedder: Embedder | None = default
        if doc.misses and doc.held is None:
            try:
                embedder = _reserve(rt, meter, doc, target)
            except JobDeferred as deferred:  # the budget ran out: this document and the rest wait for it
                for rest in docs[i:]:
                    defer_job(rt, rest.lease, deferred)
                break
            if not same_space(default, embedder):  # the budget sent it to another space: look there
                space_of, doc.hits = cached_in(rt, embedder, doc.document_id, doc.pending)
                doc.misses = misses_of(doc.pending, doc.hits)
                calls.setdefault(_identity(embedder), _Call(embedder, space_of)).docs.append(doc)
                continue
        if embedder is None:  # nothing to send and no space: only a completion to record
            embedder = _any_embedder(rt)
        calls.setdefault(_identity(embedder), _Call(embedder, space)).docs.append(doc)
    return calls


def _identity(embedder: Embedder) -> tuple[str, int, bool]:
    return embedder.model, embedder.dimensions, awaits_upgrade(embedder)


def _any_embedder(rt: Runtime) -> Embedder:
    routed = rt.router.embedder(budget_ok=False)
    assert routed.client is not None
    return routed.client


def _reserve(rt: Runtime, meter: Meter, doc: Doc, target: Target) -> Embedder:
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


def _call_and_store(rt: Runtime, meter: Meter, call: _Call, hand_off: HandOff) -> list[UUID]:
    """One embedding call for the documents' misses, each document's share settled (or its shadow charge
    owed); then one transaction stores every vector and completes the jobs that have all of theirs."""
    sending = [d for d in call.docs if d.misses and (call.shadow or d.held is not None)]
    texts = [c.text for d in sending for c in d.misses.values()]
    space = call.space
    requests = 0
    if texts:
        try:
            result = call.embedder.embed(texts)
        except Exception as failed:  # noqa: BLE001  (each document goes on alone, with its retries)
            for doc in sending:
                if doc.held is not None:
                    billing.after_failure(meter, doc.held, failed)
                hand_off(doc.job_id, failed)
            return []
        tokens = shares(
            result.billed_tokens, [sum(c.token_count for c in d.misses.values()) for d in sending]
        )
        requests = result.billed_requests
        offset = 0
        settling: list[tuple[Reservation, Charge]] = []
        for n, (doc, share) in enumerate(zip(sending, tokens, strict=True)):
            doc.share = share
            if doc.held is not None:
                counted = requests if n == 0 else 0  # the call's requests, counted once
                settling.append((doc.held, meter.embed_charge(share, requests=counted, model=doc.model)))
            doc.made = result.vectors[offset : offset + len(doc.misses)]
            offset += len(doc.misses)
        meter.settle_many(settling)
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
    shadows = _shadows(meter, sending, requests) if call.shadow else []
    if space is not None:
        space = indexing.before_write(rt, space)  # a large backlog loads without index maintenance
    done = _stored(rt, meter, space, call, shadows)
    if space is not None:
        indexing.after_write(rt, space)
    return done


def _shadows(meter: Meter, sending: list[Doc], requests: int) -> list[Shadow]:
    return [
        Shadow(
            key=doc.key,
            service="openai",
            stage="embed",
            estimate=meter.embed_charge(sum(c.token_count for c in doc.misses.values()), model=doc.model),
            actual=meter.embed_charge(doc.share, requests=requests if n == 0 else 0, model=doc.model),
            document_id=doc.document_id,
            job_id=doc.job_id,
        )
        for n, doc in enumerate(sending)
    ]


def _stored(rt: Runtime, meter: Meter, space: Space | None, call: _Call, shadows: list[Shadow]) -> list[UUID]:
    """One transaction: hold the documents, fence the leases, store every vector, charge the shadows,
    complete the jobs that have all their vectors."""
    with rt.pool.connection() as conn, conn.transaction():
        if space is not None:
            spaces.check_writable(conn, space)  # SpaceSwitched: each document goes on alone, anew
        # The job still runs (which holds its document: a delete waits, or went first) and its lease is
        # still this worker's (checked after the documents, the order a delete's cascade locks them in).
        running = jobs.hold_documents(conn, [d.job_id for d in call.docs])
        live = [d for d in call.docs if running.get(d.job_id) == "running"]
        mine = lease_store.holding(conn, [d.lease for d in live])
        for doc in live:
            if doc.job_id not in mine:
                log.warning("lease_lost", job_id=str(doc.job_id), unit=PARSE)
        docs = [d for d in live if d.job_id in mine]
        pending = [d for d in docs if d.pending]
        if pending:
            assert space is not None  # hits need a space, misses made one
            saved = store_vectors_many(conn, space, pending)
            if awaits_upgrade(call.embedder):
                upgrades.mark(conn, [c.id for d in pending for c in d.pending])
            for doc, spared in zip(pending, saved, strict=True):
                record_saving(
                    conn,
                    meter,
                    space,
                    spared,
                    key=doc.key,
                    document_id=doc.document_id,
                    job_id=doc.job_id,
                    model=doc.model,
                )
        # Calls made are charged whatever was stored (a job deleted meanwhile has no rows to charge to).
        meter.charge_shadows(conn, [s for s in shadows if s.job_id in running])
        done = finish_many(conn, [d.job_id for d in docs])
    CHUNKS_EMBEDDED.inc(sum(len(d.pending) for d in pending))
    DOCUMENTS_COMPLETED.inc(len(done))
    return done


def store_vectors_many(
    conn: psycopg.Connection, space: Space, docs: list[Doc]
) -> list[list[chunks.StoredChunk]]:
    """`store_vectors` for many documents: one copy from the cache, one COPY of the vectors made, one
    update of the chunks; return, per document, the chunks no call was made for."""
    hits = [c.id for d in docs for c in d.pending if c.text_hash in d.hits]
    served = set(reuse.copy_cached(conn, space, hits))
    ids: list[int] = []
    rows: list[np.ndarray] = []
    for doc in docs:
        fresh = [c for c in doc.pending if c.text_hash in doc.misses]
        if fresh:
            assert doc.made is not None  # misses are what was sent
            row = {h: i for i, h in enumerate(doc.misses)}
            ids += [c.id for c in fresh]
            rows.append(doc.made[[row[c.text_hash] for c in fresh]])
    if ids:
        vectors.write(conn, space, ids, np.concatenate(rows))
        reuse.remember(conn, space, ids)
    chunks.mark_embedded(conn, [*served, *ids], space.id)
    # Not sent: texts the cache served, and repeats of a text sent once.
    return [
        [c for c in d.pending if c.id in served]
        + [c for c in d.pending if c.text_hash in d.misses and d.misses[c.text_hash] is not c]
        for d in docs
    ]
