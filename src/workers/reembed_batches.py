"""`ingest reembed --when-cheapest`: a run's embeddings through OpenAI's Batch API, at its price.

1. **queue** (`prepare`, in the run's step): what the target's embedding cache holds is copied; one chunk
   of each other (owner, text) the target lacks becomes an input (`embedding_batch_items.run_id`). The
   step then waits (`step_action`), waking every `batch_poll_s` to look again; the sweeper re-sends a
   run whose message was lost, as for a synchronous run.
2. **send** (the batch tender, workers.batch_route): a run's inputs go out at once, packed to the Batch
   API's limits, in batches of their own embedding for the run's target; the run's share is reserved at
   the batch price (ledger stage `reembed`, key `reembed:<run>:batch:<batch>`), the batch row commits
   before the upload and its vendor id is recorded before anything waits on it, so a process that dies
   meanwhile makes no second batch.
3. **collect** (`collect`, when the batch ends): the share is settled from the output's usage (released
   when no line answered), the vectors stored in the target with the saving (`kind` batch), the
   inputs not embedded sent where the run's fallback says (`missed_action`), and the run's step woken:
   with no input left it copies the rest from the cache, then verifies and switches as any run does.
"""

from __future__ import annotations

from uuid import UUID

import numpy as np
import structlog
from psycopg import sql

from costs import savings
from costs.ledger import find as find_entry
from ingest.db.pool import autocommit
from ingest.store import embedding_batches, reembeds, reuse, vectors
from ingest.store import reembed_batches as store
from ingest.store.reembeds import Run
from ingest.store.vectors import Space
from router.batch_packing import Answer, split_answers
from workers import messages
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


def reservation_key(run_id: int, batch_id: UUID) -> str:
    """The ledger key of a run's share of a batch (under the run's prefix: its progress counts it)."""
    return f"reembed:{run_id}:batch:{batch_id}"


def step_action(*, missing: int, outstanding: int) -> str:
    """What a batch run's step does once its inputs are queued: `switch` when nothing is missing and no
    input is out, else `wait` and look again. Missing chunks that no input of the run carries are a text
    whose vector is on its way to the cache (the run's or an earlier cancelled run's batch, still out):
    the next look copies it or, that batch having failed, queues it."""
    return "switch" if not (missing or outstanding) else "wait"


def missed_action(fallback: str, attempts: int, max_attempts: int) -> str:
    """Where inputs a batch did not embed go: `sync` (the run's fallback: the endpoint, full price),
    `requeue` (a later batch) while batches left them fewer than `max_attempts` times, else `fail`."""
    if fallback == "sync":
        return "sync"
    return "requeue" if attempts < max_attempts else "fail"


def prepare(rt: Runtime, run: Run, source: Space, target: Space) -> str:
    """The step of a batch run: copy what the cache holds, queue the rest, and say what comes next."""
    with autocommit(rt.pool) as conn:
        if store.outstanding(conn, run.id):
            # Its batches are out: a look costs one count. Chunks stored in the source meanwhile are
            # queued by the step their collection wakes.
            return "wait"
    with rt.pool.connection() as conn, conn.transaction():
        copied = reuse.copy_cached(conn, target, store.missing_ids(conn, source, target))
        queued = store.queue(conn, run.id, source, target)
        outstanding = store.outstanding(conn, run.id)
        missing = reembeds.missing_count(conn, source, target)
    if queued:
        log.info("reembed_waiting_for_batch", run=run.id, inputs=queued, cached=len(copied))
        messages.actor(messages.TEND_BATCHES).send()
    return step_action(missing=missing, outstanding=outstanding)


def collect(
    rt: Runtime,
    batch: embedding_batches.Batch,
    run_id: int,
    share: list[embedding_batches.Item],
    answers: dict[str, Answer],
    reason: str,
) -> None:
    """Settle, store and account a run's share of a finished batch; send the rest where the run says."""
    meter = rt.router.meter
    answered, missed = split_answers(share, answers)
    tokens = sum(a.tokens for _, a in answered)
    key = reservation_key(run_id, batch.id)
    # Charged before the vectors are stored, as for a job's share: a process that dies in between finds
    # the inputs here again and settles once more (the key is charged once), then stores them.
    with rt.pool.connection() as conn:
        held = find_entry(conn, key, simulated=False)
    if held is not None:
        if answered:
            meter.settle(held, meter.batch_embed_charge(tokens, requests=len(answered), model=batch.model))
        else:
            meter.release(held)
    if answered:
        _store(rt, batch, run_id, answered, tokens, key)
    if missed:
        _not_embedded(rt, run_id, missed, reason)
    _wake(rt, run_id)


def _store(
    rt: Runtime,
    batch: embedding_batches.Batch,
    run_id: int,
    answered: list[tuple[embedding_batches.Item, Answer]],
    tokens: int,
    key: str,
) -> None:
    """The vectors go into the batch's space (the run's target) for the chunks still lacking one there,
    whatever became of the run meanwhile: they are that model's vectors of those texts, and a later run
    to the same space keeps them. The saving is recorded in the same transaction."""
    meter = rt.router.meter
    ids = [i.chunk_id for i, _ in answered]
    rows = np.asarray([a.embedding for _, a in answered], dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with rt.pool.connection() as conn:
        space = vectors.ensure_space(
            conn, batch.model, batch.dimensions, simulated=False, index_kind=rt.settings.vector_index
        )
    with rt.pool.connection() as conn, conn.transaction():
        # Chunks deleted meanwhile are left out; the ones kept cannot go until this commits.
        lacking = {
            r[0]
            for r in conn.execute(
                sql.SQL(
                    "SELECT c.id FROM chunks c WHERE c.id = ANY(%s) AND NOT EXISTS"
                    " (SELECT 1 FROM {t} v WHERE v.chunk_id = c.id) FOR SHARE OF c"
                ).format(t=space.table),
                (ids,),
            )
        }
        keep = [k for k, chunk_id in enumerate(ids) if chunk_id in lacking]
        if keep:
            kept = [ids[k] for k in keep]
            vectors.write(conn, space, kept, rows[keep])
            reuse.remember(conn, space, kept)
        embedding_batches.remove(conn, ids)
        saved = meter.embed_charge(tokens, model=batch.model).usd
        saved -= meter.batch_embed_charge(tokens, model=batch.model).usd
        if saved > 0:
            savings.record(
                conn,
                savings.Saving(
                    key=key,
                    service="openai",
                    simulated=False,
                    day=meter.today(),
                    chunks=len(answered),
                    tokens=tokens,
                    usd=saved,
                    price_version=meter.prices.version,
                    kind="batch",
                ),
            )
    log.info("reembed_batch_stored", run=run_id, batch_id=str(batch.id), chunks=len(keep), tokens=tokens)


def _not_embedded(rt: Runtime, run_id: int, missed: list[embedding_batches.Item], reason: str) -> None:
    ids = [i.chunk_id for i in missed]
    with rt.pool.connection() as conn, conn.transaction():
        run = reembeds.get(conn, run_id)
        if run is None or run.status != "building":
            embedding_batches.remove(conn, ids)
            return
        action = missed_action(
            run.batch_fallback, max(i.attempts for i in missed), rt.settings.batch_max_attempts
        )
        if action == "requeue":
            embedding_batches.requeue(conn, ids)
        elif action == "sync":
            store.drop_unsent(conn, run_id, also=ids)
            reembeds.go_sync(conn, run_id)
        else:
            error = f"{len(missed)} inputs were not embedded after {rt.settings.batch_max_attempts} batches ({reason})"
            store.drop_unsent(conn, run_id, also=ids)
            reembeds.fail(conn, run_id, error)
    if action == "requeue":
        log.warning("reembed_batch_inputs_requeued", run=run_id, inputs=len(ids), reason=reason)
    elif action == "sync":
        # Never silent: the rest of the run pays the endpoint's full price, and says why.
        log.warning("reembed_batch_fallback_sync", run=run_id, inputs=len(ids), reason=reason)
    else:
        log.error("reembed_failed", run=run_id, reason=reason)


def _wake(rt: Runtime, run_id: int) -> None:
    """Send the run's step now rather than at its next look, once no input of it is out (or it left the
    batch route); the step's own delayed message then finds itself stale."""
    with autocommit(rt.pool) as conn:
        run = reembeds.get(conn, run_id)
        left = store.outstanding(conn, run_id)
    if run is None or run.status != "building" or (left and run.embed_route == "batch"):
        return
    messages.actor(messages.REEMBED_STEP).send_with_options(args=(run.id, run.step))
