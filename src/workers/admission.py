"""Fair sharing: each user has at most `user_active_jobs` jobs admitted to the broker at a time.

A job is *admitted* when its message is sent (`enqueued_at` is set); an admitted job stays active while
it is queued or running. The rest of a user's jobs are *held*: `queued` in the database, with no message.
`admit` tops a user up to the limit, oldest first; it runs when a file is submitted, after every message
of one of the user's jobs (a finished, failed or deferred job frees a slot) and in every sweep.

So the broker's queue holds at most `user_active_jobs` jobs per user, in arrival order: a second user's
single file waits behind at most that many of a first user's ten thousand, never behind all of them.
And since the queue stays short, the sweeper can re-send an admitted job that has not moved for a long
time without flooding the queue with copies (see workers.middleware.sweeper).
"""

from __future__ import annotations

from uuid import UUID

import psycopg
import structlog

from ingest.db.pool import autocommit
from ingest.store import jobs
from workers import messages
from workers.batch_plan import Sized, plan
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


_TOP_UP = (
    "WITH active AS ("
    f" SELECT count(*) AS n FROM jobs j JOIN documents d ON d.id = j.document_id WHERE d.owner_id = %(owner)s AND {ACTIVE})"
    " UPDATE jobs SET enqueued_at = now() WHERE id IN ("
    f" SELECT j.id FROM jobs j JOIN documents d ON d.id = j.document_id WHERE d.owner_id = %(owner)s AND {HELD}"
    " ORDER BY j.created_at LIMIT greatest(%(limit)s - (SELECT n FROM active), 0)) RETURNING id"
)
_LOCK = "SELECT pg_advisory_xact_lock(%(lock_class)s, %(lock_id)s)"


def _params(owner_id: int, limit: int) -> dict[str, int]:
    return {
        "owner": owner_id,
        "limit": limit,
        "lock_class": ADMISSION_LOCK_CLASS,
        "lock_id": owner_id % 2**31,
    }


def admit_in(conn: psycopg.Connection, owner_id: int, limit: int) -> list[UUID]:
    """Mark the user's oldest held jobs admitted, up to `limit` active; return them. Call in a transaction
    and send their messages after it commits (a job admitted without a message is the sweeper's).

    The count and the update are one statement, run after the lock is held: its snapshot (read
    committed) is taken then, so it sees every top-up of this user that committed before."""
    params = _params(owner_id, limit)
    conn.execute(_LOCK, params)
    return [job_id for (job_id,) in conn.execute(_TOP_UP, params).fetchall()]


def admit(rt: Runtime, owner_id: int) -> int:
    """Top the user up to `user_active_jobs` admitted jobs and send their messages; return how many."""
    with rt.pool.connection() as conn, conn.transaction():
        admitted = admit_in(conn, owner_id, rt.settings.user_active_jobs)
    send(rt, admitted)
    return len(admitted)


def _grouped(rt: Runtime, job_ids: list[UUID]) -> list[list[UUID]]:
    limit = rt.settings.document_batch_tokens
    if limit == 0 or len(job_ids) < 2:
        return [[job_id] for job_id in job_ids]
    with autocommit(rt.pool) as conn:  # one read
        sizes = jobs.document_sizes(conn, job_ids)
    sized = [Sized(job_id, sizes.get(job_id, 0)) for job_id in job_ids]
    # A batch runs on one thread: the jobs admitted get the worker threads' share that their slots are of
    # the user's (all of them at a fresh start; one message for the slots one finished batch frees).
    share = round(rt.settings.worker_threads * len(job_ids) / rt.settings.user_active_jobs)
    return plan(sized, limit, spread=max(1, share))


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


def send(rt: Runtime, job_ids: list[UUID]) -> None:
    if rt.settings.broker_url is None:
        hold_queued(rt, job_ids)  # in-process: the messages live in this process, their leases with it
    for group in _grouped(rt, job_ids):
        if len(group) == 1:
            messages.actor(messages.PARSE_DOCUMENT).send(str(group[0]))
        else:  # small documents travel together (workers.batch)
            messages.actor(messages.INGEST_BATCH).send([str(job_id) for job_id in group])
    if job_ids:
        log.debug("jobs_admitted", count=len(job_ids))
