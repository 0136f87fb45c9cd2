"""Fair sharing: each user has at most `user_active_jobs` jobs admitted to the broker at a time.

A job is *admitted* when its message is sent (`enqueued_at` is set); an admitted job stays active while
it is queued or running. The rest of a user's jobs are *held*: `queued` in the database, with no message.
`admit` tops a user up to the limit, oldest first; it runs when a file is submitted, after every message
of one of the user's jobs (a finished, failed or deferred job frees a slot) and in every sweep.

So the broker's queue holds at most `user_active_jobs` jobs per user, in arrival order: a second user's
single file waits behind at most that many of a first user's ten thousand, never behind all of them.

A slot is one document, or `batch_documents_per_slot` small ones (those that travel together in one
message, workers.batch): a batch of small documents costs a worker thread about what one larger document
does, so counting each as a slot would cap batches at `user_active_jobs` over the worker threads.
And since the queue stays short, the sweeper can re-send an admitted job that has not moved for a long
time without flooding the queue with copies (see workers.middleware.sweeper).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import psycopg
import structlog

from ingest.db.pool import autocommit
from ingest.store import jobs
from workers import messages
from workers.batch_plan import BYTES_PER_TOKEN, Sized, plan
from workers.leasing import hold_queued
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Class of the per-user advisory lock (any constant; the user id is the object): concurrent top-ups of
# one user take turns, so together they never admit more than the limit.
ADMISSION_LOCK_CLASS = 0x61646D74
# A job waiting for a batch (stage 'batch') may wait a day: it holds no slot meanwhile.
ACTIVE = (
    "((j.status = 'running' AND j.stage <> 'batch') OR (j.status = 'queued' AND j.enqueued_at IS NOT NULL))"
)
HELD = "j.status = 'queued' AND j.enqueued_at IS NULL"


# A job's weight in 1/`per_slot` of a slot: a small document (one that travels in a batch: estimated at
# most half of document_batch_tokens, workers.batch_plan) weighs 1, any other `per_slot`.
_WEIGHT = "(CASE WHEN d.bytes / %(bytes_per_token)s <= %(small_tokens)s THEN 1 ELSE %(per_slot)s END)"
_TOP_UP = (
    f"WITH active AS (SELECT coalesce(sum({_WEIGHT}), 0) AS n FROM jobs j"
    f" JOIN documents d ON d.id = j.document_id WHERE d.owner_id = %(owner)s AND {ACTIVE}),"
    f" held AS (SELECT j.id, j.created_at, {_WEIGHT} AS w FROM jobs j JOIN documents d ON d.id = j.document_id"
    f" WHERE d.owner_id = %(owner)s AND {HELD} ORDER BY j.created_at, j.id LIMIT %(most)s),"
    " upto AS (SELECT id, sum(w) OVER (ORDER BY created_at, id) AS w FROM held)"
    " UPDATE jobs SET enqueued_at = now() WHERE id IN ("
    " SELECT id FROM upto WHERE w <= %(limit)s * %(per_slot)s - (SELECT n FROM active))"
    " RETURNING id, (SELECT n FROM active) = 0"
)
_LOCK = "SELECT pg_advisory_xact_lock(%(lock_class)s, %(lock_id)s)"


@dataclass(frozen=True, slots=True)
class Slots:
    """How admission weighs jobs: `per_slot` small documents (estimated at most `small_tokens`) make one
    slot; any other document is a slot of its own."""

    per_slot: int = 1
    small_tokens: int = 0


def slots(rt: Runtime) -> Slots:
    """This deployment's weighing: small documents share slots only when they travel in batches."""
    limit = rt.settings.document_batch_tokens
    if limit == 0 or rt.router.parses_remotely():  # every document goes alone (workers.batch)
        return Slots()
    return Slots(rt.settings.batch_documents_per_slot, limit // 2)


def _params(owner_id: int, limit: int, weighing: Slots) -> dict[str, int]:
    return {
        "owner": owner_id,
        "limit": limit,
        "per_slot": weighing.per_slot,
        "small_tokens": weighing.small_tokens,
        "bytes_per_token": BYTES_PER_TOKEN,
        "most": limit * weighing.per_slot,
        "lock_class": ADMISSION_LOCK_CLASS,
        "lock_id": owner_id % 2**31,
    }


def admit_in(
    conn: psycopg.Connection, owner_id: int, limit: int, weighing: Slots | None = None
) -> tuple[list[UUID], bool]:
    """Mark the user's oldest held jobs admitted, up to `limit` active slots; return them, and whether the
    user had none active before (then every worker thread may take a share of them). Call in a
    transaction and send their messages after it commits (a job admitted without a message is the
    sweeper's).

    The count and the update are one statement, run after the lock is held: its snapshot (read
    committed) is taken then, so it sees every top-up of this user that committed before."""
    params = _params(owner_id, limit, weighing or Slots())
    conn.execute(_LOCK, params)
    rows = conn.execute(_TOP_UP, params).fetchall()
    return [job_id for job_id, _ in rows], any(idle for _, idle in rows)


def admit(rt: Runtime, owner_id: int) -> int:
    """Top the user up to `user_active_jobs` admitted jobs and send their messages; return how many."""
    with rt.pool.connection() as conn, conn.transaction():
        admitted, idle = admit_in(conn, owner_id, rt.settings.user_active_jobs, slots(rt))
    send(rt, admitted, idle=idle)
    return len(admitted)


def _grouped(rt: Runtime, job_ids: list[UUID], *, idle: bool) -> list[list[UUID]]:
    weighing = slots(rt)
    # Vendor parses go alone: their waits would add up under one message's time limit (workers.batch).
    if weighing == Slots() or len(job_ids) < 2:
        return [[job_id] for job_id in job_ids]
    with autocommit(rt.pool) as conn:  # one read
        sizes = jobs.document_sizes(conn, job_ids)
    sized = [Sized(job_id, sizes.get(job_id, 0)) for job_id in job_ids]
    # A batch runs on one thread: the jobs admitted get the worker threads' share that their slots are of
    # the user's (one message for the slots one finished batch frees); when the user had nothing active,
    # a thread for each slot they fill, up to every thread.
    threads = rt.settings.worker_threads
    used = sum(1 if s.size // BYTES_PER_TOKEN <= weighing.small_tokens else weighing.per_slot for s in sized)
    slots_used = used / weighing.per_slot
    share = round(threads * slots_used / rt.settings.user_active_jobs)
    spread = min(threads, round(slots_used)) if idle else share
    return plan(sized, rt.settings.document_batch_tokens, spread=max(1, spread))


def admit_everyone(rt: Runtime) -> int:
    """Top up every user who has held jobs (the sweeper's pass; it catches a top-up a crash skipped)."""
    with rt.pool.connection() as conn:
        owners = [
            owner
            for (owner,) in conn.execute(
                f"SELECT DISTINCT d.owner_id FROM jobs j JOIN documents d ON d.id = j.document_id WHERE {HELD}"
            )
        ]
    return sum(admit(rt, owner) for owner in owners)


def send(rt: Runtime, job_ids: list[UUID], *, idle: bool = False) -> None:
    if rt.settings.broker_url is None:
        hold_queued(rt, job_ids)  # in-process: the messages live in this process, their leases with it
    for group in _grouped(rt, job_ids, idle=idle):
        if len(group) == 1:
            messages.actor(messages.PARSE_DOCUMENT).send(str(group[0]))
        else:  # small documents travel together (workers.batch)
            messages.actor(messages.INGEST_BATCH).send([str(job_id) for job_id in group])
    if job_ids:
        log.debug("jobs_admitted", count=len(job_ids))
