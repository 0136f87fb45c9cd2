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

The tender also sends the inputs of `ingest reembed --when-cheapest` runs (`_send_runs`: at once, in
batches of their own embedding for the run's target, reserved for the run); workers.reembed_batches
queues them and collects their answers.

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
from costs.charges import Charge
from costs.ledger import extend as extend_entry
from costs.meter import Meter, Reservation
from ingest.db.pool import autocommit
from ingest.db.rows import scalar
from ingest.leases import Lease
from ingest.store import embedding_batches as store
from ingest.store import jobs, reembeds, vectors
from ingest.store import reembed_batches as reembed_store
from router.batch_packing import Input, input_line, pack
from router.batches import BatchClient, BatchState
from router.decide import Choice
from router.factory import Target
from workers import admission, leasing, messages, reembed_batches
from workers.batch_answers import Share, finish, follow, priced_model, reservation_key, share_of
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
        _send_runs(rt)
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
        for job_id in {item.job_id for item in waiting if item.job_id is not None}:
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


def _hold(
    meter: Meter, share: list[store.Item], batch_id: UUID, estimate: Charge, simulated: bool
) -> Reservation:
    """Reserve one share of a batch: a job's (stage `embed`, charged to its document) or a reembed run's
    (stage `reembed`, under the run's ledger prefix)."""
    first = share[0]
    if first.run_id is not None:
        return meter.reserve(
            key=reembed_batches.reservation_key(first.run_id, batch_id),
            service="openai",
            stage="reembed",
            estimate=estimate,
        )
    return meter.reserve(
        key=reservation_key(first.document_id, batch_id),
        service="openai",
        stage="embed",
        estimate=estimate,
        simulated=simulated,
        document_id=first.document_id,
        job_id=first.job_id,
    )


def _send_runs(rt: Runtime) -> None:
    """Reembed runs' inputs go out as soon as a step queued them (a run queues all it lacks at once), in
    batches of their own embedding for the run's target, through the real Batch API only: a run builds a
    real space, and waits while the service cannot serve."""
    with autocommit(rt.pool) as conn:
        waiting = reembed_store.pending(conn)
    if not waiting:
        return
    by_run: dict[int, list[store.Item]] = defaultdict(list)
    for item in waiting:
        assert item.run_id is not None
        by_run[item.run_id].append(item)
    routed = rt.router.batch_client()
    if routed.decision.choice is not Choice.REAL or routed.client is None:
        log.info("batch_not_sent", reason=routed.decision.reason, runs=list(by_run))
        with autocommit(rt.pool) as conn:
            for run_id in by_run:
                reembeds.note_waiting(
                    conn, run_id, f"the Batch API cannot serve now: {routed.decision.reason}"
                )
        return
    client = routed.client
    max_bytes = rt.settings.batch_max_file_mb * 1024 * 1024
    for run_id, items in by_run.items():
        with autocommit(rt.pool) as conn:
            run = reembeds.get(conn, run_id)
            target = vectors.get_space(conn, run.target_space_id) if run is not None else None
        if target is None:
            continue
        named = target.dimensions if client.names_dimensions(target.model) else None
        lines = [
            input_line(Input(str(i.chunk_id), i.text), model=target.model, dimensions=named) for i in items
        ]
        for part in pack(lines, max_requests=rt.settings.batch_max_requests, max_bytes=max_bytes):
            _open_batch(
                rt,
                client,
                (target.model, target.dimensions),
                [items[i] for i in part],
                [lines[i] for i in part],
            )


def _open_batch(
    rt: Runtime, client: BatchClient, target: Target, items: list[store.Item], lines: list[bytes]
) -> None:
    """Reserve each share (a job's or a reembed run's) at the batch price, record the batch (with the
    space it embeds for) and its inputs, then send it."""
    batch_id = uuid.uuid4()
    meter = rt.router.meter
    by_share: dict[Share, list[store.Item]] = defaultdict(list)
    for item in items:
        by_share[share_of(item)].append(item)
    accepted: dict[Share, Reservation] = {}
    for owner, share in by_share.items():
        estimate = meter.batch_embed_charge(
            sum(i.tokens for i in share), requests=len(share), model=priced_model(client.kind, target[0])
        )
        try:
            held = _hold(meter, share, batch_id, estimate, client.kind != "real")
        except BudgetExhausted as refused:
            log.info("batch_budget_refused", share=str(owner), reason=str(refused))
            with autocommit(rt.pool) as conn:  # `ingest reembed --status`, `ingest status` say why it waits
                if share[0].run_id is not None:
                    reembeds.note_waiting(conn, share[0].run_id, str(refused))
                else:
                    jobs.note_batch_wait(
                        conn, {i.job_id for i in share if i.job_id is not None}, str(refused)
                    )
            continue
        accepted[owner] = held
    keep = [i for i, item in enumerate(items) if share_of(item) in accepted]
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
        for run_id in {r for i in keep if (r := items[i].run_id) is not None}:
            reembeds.note_waiting(conn, run_id, None)  # a budget refusal noted before no longer holds
        jobs.note_batch_wait(conn, {j for i in keep if (j := items[i].job_id) is not None}, None)
        batch = store.get(conn, batch_id)
    assert batch is not None
    log.info(
        "batch_opened", batch_id=str(batch_id), shares=len(accepted), inputs=len(keep), bytes=len(content)
    )
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
