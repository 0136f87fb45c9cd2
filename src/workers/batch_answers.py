"""The batch route's answers (workers.batch_route sends the batches): a finished batch's output and error
lines matched to their chunks by `custom_id`, each job's share charged, stored and accounted, and what
the batch did not embed sent where the job's fallback says.

Per job, in this order: its reservation is settled at the Batch API's price of the lines that answered it
(released when none did); then its vectors are stored, with the saving, in the transaction that may
complete the job; then the inputs not embedded go to a later batch, to the endpoint (`sync`), or fail the
job once `batch_max_attempts` batches have not embedded them.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

import numpy as np
import structlog

from costs import savings
from costs.ledger import find as find_entry
from ingest.db.pool import autocommit
from ingest.store import chunks, jobs, reuse, spaces, upgrades, vectors
from ingest.store import embedding_batches as store
from router.batch_packing import Answer, split_answers
from router.batches import BatchState
from workers import indexing, leasing, messages, reembed_batches, upgrade
from workers.middleware.metrics import CHUNKS_EMBEDDED, DOCUMENTS_COMPLETED
from workers.runtime import Runtime
from workers.states import fail_job, finish_if_done

log = structlog.get_logger(__name__)


# Who a batch's input belongs to: ("job", job id) or ("run", reembed run id); each is reserved, settled
# and stored on its own.
Share = tuple[str, UUID | int]


def share_of(item: store.Item) -> Share:
    if item.run_id is not None:
        return ("run", item.run_id)
    assert item.job_id is not None  # the table's check: a job's or a run's
    return ("job", item.job_id)


def reservation_key(document_id: UUID, batch_id: UUID) -> str:
    """The ledger key of one job's share of a batch."""
    return f"{document_id}:embed-batch:{batch_id}"


def priced_model(client_kind: str, model: str) -> str | None:
    """The model a batch is priced at: its own when real; the configured one for mock shadow costs."""
    return model if client_kind == "real" else None


def follow(rt: Runtime, batch: store.Batch) -> None:
    assert batch.vendor_batch_id is not None
    client = rt.router.batch_client_of(batch.client)
    state = client.retrieve(batch.vendor_batch_id)
    if not state.terminal:
        with autocommit(rt.pool) as conn:
            store.record_status(conn, batch.id, state.status)
        return
    answers = {a.custom_id: a for a in client.answers(state)}
    finish(rt, batch, state, answers)


def finish(rt: Runtime, batch: store.Batch, state: BatchState, answers: dict[str, Answer]) -> None:
    with autocommit(rt.pool) as conn:
        items = store.items_of(conn, batch.id)
    by_share: dict[Share, list[store.Item]] = defaultdict(list)
    for item in items:
        by_share[share_of(item)].append(item)
    reason = state.error or f"batch {state.vendor_batch_id or batch.id} {state.status}"
    for (_, owner), share in by_share.items():
        if isinstance(owner, int):
            reembed_batches.collect(rt, batch, owner, share, answers, reason)
        else:
            _collect(rt, batch, owner, share, answers, reason)
    with autocommit(rt.pool) as conn:
        store.finish(conn, batch.id, state.status, state.error)
    log.info("batch_done", batch_id=str(batch.id), vendor_batch_id=state.vendor_batch_id, status=state.status)


def _collect(
    rt: Runtime,
    batch: store.Batch,
    job_id: UUID,
    share: list[store.Item],
    answers: dict[str, Answer],
    reason: str,
) -> None:
    """Store, settle and account one job's share of a finished batch; send the rest where the job says."""
    meter = rt.router.meter
    document_id = share[0].document_id
    answered, missed = split_answers(share, answers)
    simulated = batch.client != "real"
    model = priced_model(batch.client, batch.model)
    tokens = sum(a.tokens for _, a in answered)
    # The vendor billed the lines it answered, whatever became of the job meanwhile. Charged before the
    # vectors are stored: a process that dies in between finds the inputs still here, settles again
    # (once per key: nothing more) and stores them; the other order could store and never charge.
    with rt.pool.connection() as conn:
        held = find_entry(conn, reservation_key(document_id, batch.id), simulated=simulated)
    if held is not None:
        if answered:
            meter.settle(held, meter.batch_embed_charge(tokens, requests=len(answered), model=model))
        else:
            meter.release(held)
    done = False
    switched: str | None = None
    space = None
    if answered:
        with rt.pool.connection() as conn:
            space = vectors.ensure_space(
                conn, batch.model, batch.dimensions, simulated=simulated, index_kind=rt.settings.vector_index
            )
        space = indexing.before_write(rt, space)
        try:
            done = _store(rt, batch, job_id, space, answered, tokens, model)
        except spaces.SpaceSwitched as moved:
            # `ingest reembed` switched spaces while the batch ran: its vectors belong to a space searches
            # left, so none is stored and the inputs go again, for the new space, as the job's fallback
            # says. The vendor billed these lines all the same: their charge above stands.
            switched = str(moved)
            rt.router.target(fresh=True)  # this process's next embeddings (the sync fallback's) go there
            log.info(
                "space_switched_under_batch", job_id=str(job_id), batch_id=str(batch.id), reason=switched
            )
        else:
            CHUNKS_EMBEDDED.inc(len(answered))
    if space is not None:
        indexing.after_write(rt, space)
    if switched is not None:
        embedded = [i for i, _ in answered]
        refunded = frozenset(i.chunk_id for i in embedded)
        _not_embedded(rt, job_id, embedded + missed, switched, refunded=refunded)
    elif missed:
        _not_embedded(rt, job_id, missed, reason)
    if done:
        _completed(rt, job_id)


def _store(
    rt: Runtime,
    batch: store.Batch,
    job_id: UUID,
    space: vectors.Space,
    answered: list[tuple[store.Item, Answer]],
    tokens: int,
    model: str | None,
) -> bool:
    """Store a job's answered vectors and the saving in one transaction; True when that completed the job.
    Raises SpaceSwitched, storing nothing, when `space` is a real space searches no longer read."""
    meter = rt.router.meter
    document_id = answered[0][0].document_id
    ids = [i.chunk_id for i, _ in answered]
    rows = np.asarray([a.embedding for _, a in answered], dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    done = False
    with rt.pool.connection() as conn, conn.transaction():
        if jobs.is_running(conn, job_id):
            spaces.check_writable(conn, space)  # before any chunk is written: a switch's lock order
            current = store.without_vector(conn, ids)
            keep = [k for k, chunk_id in enumerate(ids) if chunk_id in current]
            if keep:
                kept = [ids[k] for k in keep]
                vectors.write(conn, space, kept, rows[keep])
                reuse.remember(conn, space, kept)
                chunks.mark_embedded(conn, kept, space.id)
                if batch.client == "standin":  # mock vectors standing in for real ones (hybrid)
                    upgrades.mark(conn, kept)
            store.remove(conn, ids)
            full = meter.embed_charge(tokens, model=model).usd
            saved = full - meter.batch_embed_charge(tokens, model=model).usd
            if saved > 0:
                savings.record(
                    conn,
                    savings.Saving(
                        key=reservation_key(document_id, batch.id),
                        service="openai",
                        simulated=space.simulated,
                        day=meter.today(),
                        chunks=len(answered),
                        tokens=tokens,
                        usd=saved,
                        price_version=meter.prices.version,
                        document_id=document_id,
                        job_id=job_id,
                        kind="batch",
                    ),
                )
            done = finish_if_done(conn, job_id)
    return done


def _not_embedded(
    rt: Runtime,
    job_id: UUID,
    missed: list[store.Item],
    reason: str,
    *,
    refunded: frozenset[int] = frozenset(),
) -> None:
    """`refunded`: inputs the batch did embed, but for a space searches left; that batch is not counted
    against their `batch_max_attempts`."""
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, job_id)
        route = store.route_of(conn, job_id)
        if job is None or job.status != "running" or route is None:
            return
        if route.fallback == "sync":
            store.go_sync(conn, job_id)
        elif max((i.attempts for i in missed if i.chunk_id not in refunded), default=0) < (
            rt.settings.batch_max_attempts
        ):
            store.requeue(conn, [i.chunk_id for i in missed], refunded=list(refunded))
            log.warning("batch_inputs_requeued", job_id=str(job_id), inputs=len(missed), reason=reason)
            return
    if route.fallback == "sync":
        # Never silent: the job pays the full price for these, and says why.
        log.warning("batch_fallback_sync", job_id=str(job_id), inputs=len(missed), reason=reason)
        messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))
        return
    fail_job(
        rt,
        job_id,
        f"{len(missed)} inputs were not embedded after {rt.settings.batch_max_attempts} batches ({reason})",
    )


def _completed(rt: Runtime, job_id: UUID) -> None:
    DOCUMENTS_COMPLETED.inc()
    leasing.drop_queued(rt, job_id)
    log.info("job_completed", job_id=str(job_id), route="batch")
    upgrade.after_job(rt, job_id)
