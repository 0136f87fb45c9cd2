"""The batch route: a job's embeddings through OpenAI's Batch API, at half the price, within 24 hours.

1. **queue** (`enqueue`, the embed stage of a batch route job): every chunk still without a vector is
   queued as an input (`embedding_batch_items`) and the job's stage becomes `batch` ("waiting for batch").
2. **send** (`tend`, one process at a time): waiting inputs go out when no batch route job is still
   being parsed, when they have gathered `batch_gather_s`, or when they fill a batch; several jobs share a
   batch, packed to the Batch API's limits (router.batch_packing). Each job's share is reserved at the
   batch price for the whole window, then the batch row and its inputs commit, then the JSONL file is
   uploaded and the batch created, each vendor id recorded the moment it exists. A process that died
   after creating the batch but before recording it finds it by its metadata (our batch id), so the same
   inputs never go out in a second batch.
3. **follow** (`tend` again, every sweep, at most every `batch_poll_s` per batch; workers.batch_answers):
   a finished batch's output and error lines are matched to their chunks by `custom_id`; each job's
   reservation is settled from the lines' usage, its vectors stored in a transaction of their own (which
   completes the job when it has them all), and the saving against the endpoint's price recorded.
4. **what a batch did not embed** (failed lines, an expired, cancelled or invalid batch): the job's
   fallback decides. `batch`: the inputs wait for the next batch (up to `batch_max_attempts` batches,
   then the job fails saying so). `sync`: the job leaves the batch route and its remaining chunks are
   embedded through the endpoint at the full price; logged (`batch_fallback_sync`), never silent.

Nothing waits in a thread: the state is in PostgreSQL, and every sweep sends `tend` while anything is owed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import structlog

from costs.budget import BudgetExhausted
from costs.ledger import extend as extend_entry
from costs.meter import Reservation
from ingest.db.pool import autocommit
from ingest.db.rows import scalar
from ingest.leases import Lease
from ingest.store import embedding_batches as store
from ingest.store import jobs
from router.batch_packing import Input, input_line, pack
from router.batches import BatchClient, BatchState
from router.decide import Choice
from router.factory import Target
from workers import admission, leasing, messages
from workers.batch_answers import finish, follow, priced_model, reservation_key
from workers.middleware.context import current_runtime
from workers.runtime import Runtime
from workers.states import fail_job, finish_if_done

log = structlog.get_logger(__name__)

# One tender at a time, over every process (any constant, the same in every process).
TEND_LOCK_KEY = 7_310_425_171
# A batch's reservation holds through its 24 hour window, and the time to collect it.
RESERVATION_S = 26 * 3600


def wanted(rt: Runtime, job_id: UUID) -> bool:
    with autocommit(rt.pool) as conn:
        route = store.route_of(conn, job_id)
    return route is not None and route.route == "batch"


def wanted_among(rt: Runtime, job_ids: Sequence[UUID]) -> set[UUID]:
    """`wanted` for many jobs, in one read."""
    if not job_ids:
        return set()
    with autocommit(rt.pool) as conn:
        return store.batch_routed(conn, job_ids)


def enqueue(rt: Runtime, job_id: UUID, lease: Lease) -> bool:
    """The embed stage of a batch route job: queue its inputs; True when it had none left (completed)."""
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.get(conn, job_id)
        running = jobs.is_running(conn, job_id)
        leasing.fence(conn, lease)
        if job is None or not running:
            return False
        queued = store.queue_missing(conn, job_id, job.document_id)
        jobs.set_stage(conn, job_id, "batch")
        done = finish_if_done(conn, job_id)
        owner = scalar(conn.execute("SELECT owner_id FROM documents WHERE id = %s", (job.document_id,)))
    if queued:
        log.info("waiting_for_batch", job_id=str(job_id), inputs=queued)
    # A job waiting for a batch holds no admission slot: the user's next jobs go ahead meanwhile.
    admission.admit(rt, owner)
    messages.actor(messages.TEND_BATCHES).send()
    return done


def owed(conn: psycopg.Connection) -> bool:
    """Whether inputs wait or a batch is out: the sweep then sends `tend`."""
    return bool(
        scalar(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM embedding_batch_items WHERE batch_id IS NULL)"
                " OR EXISTS (SELECT 1 FROM embedding_batches WHERE status <> 'done')"
            )
        )
    )


@contextmanager
def _alone(rt: Runtime) -> Iterator[bool]:
    """Hold the tender's session lock for the block (False: another process tends now). A process that
    dies loses its connection, and the lock with it."""
    with rt.pool.connection() as conn:
        conn.autocommit = True
        got = bool(scalar(conn.execute("SELECT pg_try_advisory_lock(%s)", (TEND_LOCK_KEY,))))
        try:
            yield got
        finally:
            if got:
                conn.execute("SELECT pg_advisory_unlock(%s)", (TEND_LOCK_KEY,))


def tend_batches() -> None:
    """The actor: send what waits, follow what is out."""
    tend(current_runtime())


def tend(rt: Runtime) -> None:
    with _alone(rt) as alone:
        if not alone:
            return
        with autocommit(rt.pool) as conn:
            out = store.open_batches(conn)
        for batch in out:
            if batch.status == "preparing":
                _send(rt, batch)
        _send_waiting(rt)
        with autocommit(rt.pool) as conn:
            out = store.open_batches(conn)
        for batch in out:
            if batch.status == "submitted" and _due(rt, batch):
                follow(rt, batch)


def _due(rt: Runtime, batch: store.Batch) -> bool:
    if batch.client != "real" or batch.vendor_status is None or batch.vendor_status == "validating":
        return True
    return (datetime.now(UTC) - batch.updated_at).total_seconds() >= rt.settings.batch_poll_s


# --- sending -----------------------------------------------------------------------------------------


def _send_waiting(rt: Runtime) -> None:
    with autocommit(rt.pool) as conn:
        # Asked before the inputs are read: a job seen done coming had committed its inputs, so the read
        # below has them, and one batch takes everything that arrived together.
        all_here = not store.jobs_still_coming(conn)
        waiting = store.pending(conn)
        age = store.oldest_pending_s(conn)
    full = len(waiting) >= rt.settings.batch_max_requests
    gathered = age is not None and age >= rt.settings.batch_gather_s
    if not waiting or not (all_here or full or gathered):
        return
    routed = rt.router.batch_client()
    if routed.decision.choice is Choice.DEFER or (
        routed.client is None and routed.decision.choice is not Choice.FAIL
    ):
        log.info("batch_not_sent", reason=routed.decision.reason, inputs=len(waiting))
        return
    if routed.client is None:
        for job_id in {item.job_id for item in waiting}:
            fail_job(rt, job_id, routed.decision.reason)
        return
    client = routed.client
    target = rt.router.batch_target(client)
    model, dimensions = target
    named = dimensions if client.names_dimensions(model) else None
    lines = [input_line(Input(str(i.chunk_id), i.text), model=model, dimensions=named) for i in waiting]
    max_bytes = rt.settings.batch_max_file_mb * 1024 * 1024
    for run in pack(lines, max_requests=rt.settings.batch_max_requests, max_bytes=max_bytes):
        _open_batch(rt, client, target, [waiting[i] for i in run], [lines[i] for i in run])


def _open_batch(
    rt: Runtime, client: BatchClient, target: Target, items: list[store.Item], lines: list[bytes]
) -> None:
    """Reserve each job's share at the batch price, record the batch (with the space it embeds for) and
    its inputs, then send it."""
    batch_id = uuid.uuid4()
    meter = rt.router.meter
    by_job: dict[UUID, list[store.Item]] = defaultdict(list)
    for item in items:
        by_job[item.job_id].append(item)
    accepted: dict[UUID, Reservation] = {}
    for job_id, share in by_job.items():
        try:
            held = meter.reserve(
                key=reservation_key(share[0].document_id, batch_id),
                service="openai",
                stage="embed",
                estimate=meter.batch_embed_charge(
                    sum(i.tokens for i in share),
                    requests=len(share),
                    model=priced_model(client.kind, target[0]),
                ),
                simulated=client.kind != "real",
                document_id=share[0].document_id,
                job_id=job_id,
            )
        except BudgetExhausted as refused:
            log.info("batch_budget_refused", job_id=str(job_id), reason=str(refused))
            continue
        accepted[job_id] = held
    keep = [i for i, item in enumerate(items) if item.job_id in accepted]
    if not keep:
        return
    content = b"\n".join(lines[i] for i in keep)
    # The holds last the usual reservation time until the batch is recorded (a process that dies before
    # then leaves holds that lapse soon), then the batch's whole window, in the transaction that records it.
    window_end = meter.clock() + timedelta(seconds=RESERVATION_S)
    with rt.pool.connection() as conn, conn.transaction():
        for held in accepted.values():
            extend_entry(conn, held.id, window_end)
        store.create(
            conn,
            batch_id,
            client=client.kind,
            model=target[0],
            dimensions=target[1],
            chunk_ids=[items[i].chunk_id for i in keep],
            input_bytes=len(content),
        )
        batch = store.get(conn, batch_id)
    assert batch is not None
    log.info("batch_opened", batch_id=str(batch_id), jobs=len(accepted), inputs=len(keep), bytes=len(content))
    _send(rt, batch, content)


def _send(rt: Runtime, batch: store.Batch, content: bytes | None = None) -> None:
    """Upload the file and create the batch (or find the one an earlier process created), recording each
    vendor id as soon as it exists."""
    client = rt.router.batch_client_of(batch.client)
    found = client.find(str(batch.id))
    if found is None:
        if content is None:  # an earlier process recorded the batch and died before creating it
            with autocommit(rt.pool) as conn:
                items = store.items_of(conn, batch.id)
            if not items:
                finish(rt, batch, BatchState("", "cancelled"), {})
                return
            dimensions = batch.dimensions if client.names_dimensions(batch.model) else None
            content = b"\n".join(
                input_line(Input(str(i.chunk_id), i.text), model=batch.model, dimensions=dimensions)
                for i in items
            )
        file_id = batch.input_file_id
        if file_id is None or batch.client != "real":
            file_id = client.upload(content)
            with autocommit(rt.pool) as conn:
                store.record_file(conn, batch.id, file_id)
        found = client.create(file_id, tag=str(batch.id))
    with autocommit(rt.pool) as conn:
        store.record_vendor(
            conn,
            batch.id,
            vendor_batch_id=found.vendor_batch_id,
            vendor_status=found.status,
            expires_at=found.expires_at,
        )
    log.info("batch_sent", batch_id=str(batch.id), vendor_batch_id=found.vendor_batch_id, status=found.status)
