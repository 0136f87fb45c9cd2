"""The upgrade job: re-embeds, with the real model, the chunks the mock embedded while standing in for it
(hybrid mode), and moves them to the real space.

It runs when the openai decision is `real` (mode hybrid or real, key set, circuit letting calls through,
budget left), one batch of one document at a time: reserve the estimate through the costs meter, call,
settle, then in one transaction delete the mock vectors, write the real ones and record the new space.
It stops at the first batch the router, the budget or the service refuses, and tries again later.

Triggers: a job that completes with chunks waiting (`after_job`), and a periodic run every
`upgrade_interval_s` while any chunk waits. The periodic run's due time is in the database
(`upgrade_schedule`), so however many workers ask, one delayed message is pending at a time; a lost
message (a process that exited) only lets the due time pass, and the next trigger schedules anew.
One run at a time: a run holds a PostgreSQL advisory lock, so two never pay for the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import structlog

from costs.meter import BudgetExhausted
from ingest.db.pool import autocommit
from ingest.db.rows import scalar
from ingest.store import spaces, upgrades, vectors
from router.decide import Choice
from router.metrics import CHUNKS_UPGRADED
from workers import billing, messages
from workers.middleware.context import current_runtime
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

MAX_RETRIES = 0
# Any constant works; it only has to be the same in every process of this product.
UPGRADE_LOCK_KEY = 7_310_425_120


@dataclass(frozen=True, slots=True)
class UpgradeRun:
    upgraded: int  # chunks moved to the real space by this run
    waiting: int  # chunks still waiting when it ended
    stopped: str  # why it ended


def upgrade_waiting(rt: Runtime) -> UpgradeRun:
    """Upgrade waiting chunks, batch after batch, until none is left or something refuses."""
    with rt.pool.connection() as lock_conn:
        locked = scalar(lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (UPGRADE_LOCK_KEY,)))
        lock_conn.commit()  # a session lock outlives the transaction; the connection must not idle in one
        if not locked:
            return UpgradeRun(0, _waiting(rt), "another upgrade run is under way")
        try:
            upgraded, stopped = _run(rt)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK_KEY,))
            lock_conn.commit()
    run = UpgradeRun(upgraded, _waiting(rt), stopped)
    log.info("upgrade_run", upgraded=run.upgraded, waiting=run.waiting, stopped=run.stopped)
    return run


def _waiting(rt: Runtime) -> int:
    with rt.pool.connection() as conn:
        return upgrades.count(conn)


def _run(rt: Runtime) -> tuple[int, str]:
    meter = rt.router.meter
    upgraded = 0
    while True:
        with rt.pool.connection() as conn:
            batch = upgrades.next_batch(conn, rt.settings.embed_batch_chunks)
        if batch is None:
            return upgraded, "nothing waits"
        routed = rt.router.embedder()
        if routed.decision.choice is not Choice.REAL or routed.client is None:
            return upgraded, routed.decision.reason
        embedder = routed.client
        ids = [c.id for c in batch.chunks]
        try:
            held = meter.reserve(
                key=f"{batch.document_id}:upgrade:{ids[0]}-{ids[-1]}",
                service="openai",
                stage="upgrade",
                estimate=meter.embed_charge(sum(c.token_count for c in batch.chunks), model=embedder.model),
                document_id=batch.document_id,
            )
        except BudgetExhausted as refused:
            return upgraded, str(refused)
        try:
            result = embedder.embed([c.text for c in batch.chunks])
        except Exception as failed:  # noqa: BLE001  (the circuit has the verdict; chunks keep their mock vectors)
            billing.after_failure(meter, held, failed)
            log.warning("upgrade_batch_failed", document_id=str(batch.document_id), error=str(failed)[:300])
            return upgraded, f"the real embedder failed: {failed}"
        charge = meter.embed_charge(
            result.billed_tokens, requests=result.billed_requests, model=embedder.model
        )
        meter.settle(held, charge)
        try:
            with rt.pool.connection() as conn, conn.transaction():
                target = vectors.ensure_space(
                    conn,
                    embedder.model,
                    embedder.dimensions,
                    simulated=False,
                    index_kind=rt.settings.vector_index,
                )
                spaces.check_writable(conn, target)
                moved = vectors.move_upgraded(conn, target, ids, result.vectors)
        except spaces.SpaceSwitched as switched:  # the chunks keep their mock vectors until the next run
            rt.router.target(fresh=True)
            return upgraded, str(switched)
        CHUNKS_UPGRADED.inc(len(moved))
        upgraded += len(moved)
        log.info(
            "chunks_upgraded", document_id=str(batch.document_id), chunks=len(moved), space=target.table_name
        )


def schedule(rt: Runtime, token: datetime | None = None) -> bool:
    """Send the periodic run's message, unless one is already pending; whether this call sent it."""
    delay_s = rt.settings.upgrade_interval_s
    with rt.pool.connection() as conn:
        due = upgrades.claim_schedule(conn, delay_s, token)
    if due is None:
        return False
    messages.actor(messages.UPGRADE_EMBEDDINGS).send_with_options(
        kwargs={"token": due.isoformat()}, delay=round(delay_s * 1000)
    )
    return True


def after_job(rt: Runtime, job_id: UUID) -> None:
    """A job completed: if its document has chunks waiting for upgrade, try them now."""
    with autocommit(rt.pool) as conn:  # one read: no BEGIN and COMMIT round trips
        waiting = upgrades.count_for_job(conn, job_id)
    if waiting:
        messages.actor(messages.UPGRADE_EMBEDDINGS).send()


def after_jobs(rt: Runtime, job_ids: Sequence[UUID]) -> None:
    """`after_job` for the jobs a batch completed, in one read."""
    if not job_ids:
        return
    with autocommit(rt.pool) as conn:
        waiting = upgrades.waiting_among(conn, job_ids)
    if waiting:
        messages.actor(messages.UPGRADE_EMBEDDINGS).send()


def upgrade_embeddings(token: str | None = None) -> None:
    """Run the upgrade; while chunks still wait, make sure the next periodic run is scheduled."""
    rt = current_runtime()
    run = upgrade_waiting(rt)
    if run.waiting:
        schedule(rt, datetime.fromisoformat(token) if token else None)
