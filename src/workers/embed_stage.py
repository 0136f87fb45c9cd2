"""The embed stage of one document's job: embed and store one batch of its chunks under its lease, as a
plain function over a Runtime; and the cache look-ups and vector writes the batch of documents shares.

Idempotent, because Dramatiq delivers at least once: a batch only embeds chunks that have no vector yet
and replaces any vector it writes.
"""

from __future__ import annotations

import functools
from uuid import UUID

import numpy as np
import psycopg
import structlog

from costs import savings
from costs.meter import Meter
from ingest.db.pool import autocommit
from ingest.leases import Lease, embed_unit
from ingest.store import chunks, jobs, reuse, spaces, upgrades, vectors
from ingest.store.vectors import Space
from router.factory import Routed, Target
from router.guarded import awaits_upgrade
from router.protocols import Embedder, EmbedResult
from workers import batch_route, indexing, leasing
from workers.metering import billed, metered, served
from workers.middleware.metrics import CHUNKS_EMBEDDED, DOCUMENTS_COMPLETED
from workers.runtime import Runtime
from workers.states import finish_if_done

log = structlog.get_logger(__name__)


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
    embedder = served(stand_in)
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
