"""`ingest reembed`: build a new embedding space from the stored chunks while searches read the active
one, then switch every search to it in one transaction.

A run (`reembeds` row) moves by one message at a time, `reembed_step(run, step)`: each embeds one batch
of the chunks the target still lacks (one document's, its cost charged to that document through the
meter: reserve, call, settle), stores their vectors, moves the run to the next step and sends that
step's message. The target's vectors are the progress, so a run resumed after a kill embeds only what is
missing; a message whose step is not the run's (a late copy after the sweeper re-sent a stalled run)
does nothing; an advisory lock per run keeps two messages from working at once.

When nothing is missing, the switch (`spaces.switch`) locks the active row, checks again that every
chunk of the source has its vector in the target, moves the chunks and the active space, and marks the
run switched: all in one transaction, which every search's snapshot sees whole or not at all. Chunks a
new document stored in the source meanwhile are found missing and embedded first, so documents added
during a run land in both spaces. Refusals (mock route, open circuit, budget spent, vendor failure) park
the run with its reason and try again later.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import structlog

from costs.meter import BudgetExhausted, Reservation
from ingest.store import reembed_batches as batch_inputs
from ingest.store import reembeds, reuse, spaces, vectors
from ingest.store.reembeds import Owed, Run
from ingest.store.vectors import Space
from router.decide import Choice
from workers import billing, messages, reembed_batches
from workers.middleware.context import current_runtime
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_RETRIES = 0  # a failed step parks the run; the sweeper re-sends a run that stopped moving
# Serialises the steps of one run: this plus the run's id.
RUN_LOCK_BASE = 7_310_427_000_000
# How long a parked run waits before it asks the router again.
RETRY_S = 60


@dataclass(frozen=True, slots=True)
class Quote:
    """What a run would cost: each distinct text of an owner is embedded once, cached ones not at all."""

    model: str
    dimensions: int
    chunks: int  # chunks still to give a vector in the target
    texts: int  # distinct (owner, text) among them
    cached_texts: int  # served by the target's embedding cache: copied, not paid for
    tokens: int  # to pay for
    usd: Decimal  # through the embeddings endpoint
    batch_usd: Decimal  # through the Batch API (--when-cheapest): the same texts, once each


def quote(rt: Runtime, owed: list[Owed], chunks: int, target: Space) -> Quote:
    paid = [o for o in owed if not o.cached]
    tokens = sum(o.tokens for o in paid)
    meter = rt.router.meter
    usd = meter.embed_charge(tokens, model=target.model).usd
    batch_usd = meter.batch_embed_charge(tokens, model=target.model).usd
    cached = len(owed) - len(paid)
    return Quote(target.model, target.dimensions, chunks, len(owed), cached, tokens, usd, batch_usd)


def send(run_id: int, step: int, *, delay_s: int = 0) -> None:
    messages.actor(messages.REEMBED_STEP).send_with_options(args=(run_id, step), delay=delay_s * 1000)


def reembed_step(run_id: int, step: int) -> None:
    rt = current_runtime()
    with rt.pool.connection() as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_BASE + run_id,))
        lock_conn.commit()  # a session lock outlives the transaction; the connection must not idle in one
        try:
            following = advance(rt, run_id, step)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_BASE + run_id,))
            lock_conn.commit()
    if following is not None:
        next_step, delay_s = following
        send(run_id, next_step, delay_s=delay_s)


def advance(rt: Runtime, run_id: int, step: int) -> tuple[int, int] | None:
    """Do the run's `step`: one batch, or the switch. Returns the next step and its delay, or None when
    the run ended or the step is stale. Call holding the run's lock."""
    with rt.pool.connection() as conn:
        run = reembeds.get(conn, run_id)
        if run is None or run.status != "building" or run.step != step:
            return None
        source, target = (
            vectors.get_space(conn, run.source_space_id),
            vectors.get_space(conn, run.target_space_id),
        )
        assert source is not None and target is not None  # spaces are never deleted
    if run.embed_route == "batch":
        return _batch_step(rt, run, source, target)
    with rt.pool.connection() as conn:
        batch = reembeds.next_batch(conn, source, target, rt.settings.embed_batch_chunks, after=run.cursor)
        if batch is None and run.cursor:  # chunks stored behind the cursor (a document run again)
            batch = reembeds.next_batch(conn, source, target, rt.settings.embed_batch_chunks)
        # Inputs still in a batch sent before the run fell back to the endpoint: the batch embeds them.
        in_batches = batch_inputs.outstanding(conn, run.id) if batch is None else 0
    if batch is None:
        if in_batches:
            return _wait_for_batches(rt, run)
        if switch(rt, run, source, target):
            return None
        return _next(rt, run, None)  # a chunk arrived in the source meanwhile: embed it first
    document_id, pending = batch
    routed = rt.router.embedder(target=(target.model, target.dimensions))
    if routed.decision.choice is not Choice.REAL or routed.client is None:
        return _next(rt, run, f"the real embedder cannot serve now: {routed.decision.reason}", RETRY_S)
    with rt.pool.connection() as conn:
        hits = reuse.cached(conn, target, document_id, [c.text_hash for c in pending])
    misses: dict[bytes, reembeds.Pending] = {}
    for c in pending:
        if c.text_hash not in hits:
            misses.setdefault(c.text_hash, c)
    result = None
    if misses:
        meter = rt.router.meter
        ids = [c.id for c in pending]
        try:
            held = _reserve(rt, run, document_id, ids, sum(c.token_count for c in misses.values()), target)
        except BudgetExhausted as refused:
            return _next(rt, run, str(refused), refused.delay_s)
        try:
            result = routed.client.embed([c.text for c in misses.values()])
        except Exception as failed:  # noqa: BLE001  (the circuit has the verdict; the run waits and tries again)
            billing.after_failure(meter, held, failed, model=target.model)
            log.warning("reembed_batch_failed", run=run.id, error=str(failed)[:300])
            return _next(rt, run, f"the real embedder failed: {str(failed)[:200]}", RETRY_S)
        charge = meter.embed_charge(result.billed_tokens, requests=result.billed_requests, model=target.model)
        meter.settle(held, charge)
    with rt.pool.connection() as conn, conn.transaction():
        # Chunks deleted meanwhile are left out; the ones kept cannot go until this commits.
        alive = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM chunks WHERE id = ANY(%s) AND space_id = %s FOR SHARE",
                ([c.id for c in pending], source.id),
            )
        }
        reuse.copy_cached(conn, target, [c.id for c in pending if c.text_hash in hits and c.id in alive])
        fresh = [c for c in pending if c.text_hash in misses and c.id in alive]
        if fresh:
            assert result is not None  # misses are what was sent
            row = {h: i for i, h in enumerate(misses)}
            ids = [c.id for c in fresh]
            vectors.write(conn, target, ids, result.vectors[[row[c.text_hash] for c in fresh]])
            reuse.remember(conn, target, ids)
        following = reembeds.advance(conn, run.id, run.step, cursor=max(c.id for c in pending))
    log.info("reembed_batch", run=run.id, document_id=str(document_id), chunks=len(pending), cached=len(hits))
    return None if following is None else (following, 0)


def _batch_step(rt: Runtime, run: Run, source: Space, target: Space) -> tuple[int, int] | None:
    """A step of a run through the Batch API (workers.reembed_batches): queue what is missing, then wait
    for the batches, or switch once nothing is missing."""
    if reembed_batches.prepare(rt, run, source, target) == "switch" and switch(rt, run, source, target):
        return None
    return _wait_for_batches(rt, run)


def _wait_for_batches(rt: Runtime, run: Run) -> tuple[int, int] | None:
    """Look again after `batch_poll_s` (the batch's collection wakes the run sooner); a reason the tender
    recorded (the budget refused the batch) stays."""
    return _next(rt, run, "waiting for batch", max(1, round(rt.settings.batch_poll_s)), keep_waiting=True)


def _reserve(
    rt: Runtime, run: Run, document_id: UUID, ids: list[int], tokens: int, target: Space
) -> Reservation:
    """Hold the batch's estimate. A key already charged means an earlier delivery paid for this batch and
    died before storing it: this call is billed again, so it is charged on a key of its own."""
    meter = rt.router.meter
    base = f"reembed:{run.id}:{ids[0]}-{ids[-1]}"
    reserve = functools.partial(
        meter.reserve,
        service="openai",
        stage="reembed",
        estimate=meter.embed_charge(tokens, model=target.model),
        document_id=document_id,
    )
    held = reserve(key=base)
    attempt = 1
    while held.state == "charged":
        attempt += 1
        held = reserve(key=f"{base}#{attempt}")
    return held


def _next(
    rt: Runtime, run: Run, waiting: str | None, delay_s: int = 0, *, keep_waiting: bool = False
) -> tuple[int, int] | None:
    with rt.pool.connection() as conn:
        following = reembeds.advance(
            conn, run.id, run.step, waiting=waiting, delay_s=delay_s, keep_waiting=keep_waiting
        )
    if waiting and not keep_waiting:
        log.info("reembed_waiting", run=run.id, reason=waiting, delay_s=delay_s)
    return None if following is None else (following, delay_s)


def switch(rt: Runtime, run: Run, source: Space, target: Space) -> bool:
    """Switch every search to the target if every chunk of the source has its vector there; whether the
    run ended (switched, or superseded because the active space is no longer its source)."""
    with rt.pool.connection() as conn, conn.transaction():
        active = spaces.lock(conn)
        if active.space_id != source.id:
            reembeds.finish(conn, run.id, "superseded")
            log.warning("reembed_superseded", run=run.id, active=active.space_id, source=source.id)
            return True
        if reembeds.missing_count(conn, source, target):
            return False
        moved = spaces.switch(conn, source, target)
        reembeds.finish(conn, run.id, "switched")
    rt.router.target(fresh=True)
    log.info("reembed_switched", run=run.id, source=source.table_name, target=target.table_name, chunks=moved)
    return True


def resend_stalled(rt: Runtime, *, idle_s: float) -> int:
    """The sweeper's part: re-send the message of a building run that stopped moving for `idle_s` (its
    worker killed, its message lost). The run moves to a new step, so a late old message does nothing."""
    with rt.pool.connection() as conn:
        stalled = reembeds.stalled(conn, idle_s)
    for run_id, step in stalled:
        send(run_id, step)
    if stalled:
        log.warning("reembed_resent", runs=[run_id for run_id, _ in stalled])
    return len(stalled)
