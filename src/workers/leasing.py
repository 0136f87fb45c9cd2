"""Job leases, the worker's side: take a unit of a job before working on it, fence every write with it,
give it back after, and renew what this process holds (from the heartbeat, workers.middleware.heartbeat).

A worker that froze (a long pause, a partition) while its lease lapsed finds, at its next fenced write,
that the unit has a newer generation: `LeaseLost`, and it stops that job without writing. A worker that
died leaves a lease that lapses (at once, for a process of this host that is gone), and the sweep
(workers.middleware.sweeper) re-sends the unit. The decisions are the pure functions of `ingest.leases`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID

import psycopg
import structlog
from psycopg_pool import PoolTimeout

from ingest.db.pool import autocommit
from ingest.leases import PARSE, QUEUED, Lease, dead_owners, may_take, pid_alive
from ingest.store import leases as store
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    """The unit was taken over (this worker's lease lapsed): this holder must write nothing more."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(
            f"lease on {lease.unit} of job {lease.job_id} (generation {lease.generation}) was lost"
        )
        self.lease = lease


def take(rt: Runtime, job_id: UUID, unit: str) -> Lease | None:
    """Take `unit` of the job for this process; None when another live worker holds it (a duplicate
    message, or the same one redelivered while its first delivery is still at work)."""
    return take_many(rt, [job_id], unit).get(job_id)


def take_many(rt: Runtime, job_ids: Sequence[UUID], unit: str) -> dict[UUID, Lease]:
    """`take` for many jobs in one transaction of four statements (a batch of documents): the leases this
    process got."""
    owner = rt.leases.owner
    ids = sorted(set(job_ids))  # one order: two batches sharing jobs lock them alike
    with rt.pool.connection() as conn, conn.transaction():
        now = store.db_now(conn)
        current = store.lock_many(conn, ids, unit)
        if unit == PARSE:
            store.drop(conn, ids, QUEUED)  # the jobs' messages were taken up: they wait nowhere now
        dead = dead_owners(
            {state.owner for state in current.values() if state.owner},
            host=socket.gethostname(),
            alive=pid_alive,
        )
        seen = {
            job_id: state.generation if state else None
            for job_id in ids
            if may_take(
                state := current.get(job_id),
                me=owner,
                mine_now=rt.leases.holds(job_id, unit),
                now=now,
                dead=dead,
            )
        }
        got = store.put_many(conn, seen, unit, owner, rt.settings.lease_s)
    taken = {lease.job_id: lease for lease in got}
    for job_id, lease in taken.items():
        if unit == PARSE:
            rt.leases.discard(job_id, QUEUED)
        rt.leases.add(lease)
    return taken


def release(rt: Runtime, *leases: Lease) -> None:
    """The units are done, or handed to Dramatiq's retries: stop renewing them and delete them (one
    statement). Should the database be away, they lapse by themselves and a sweep re-sends the units
    (harmless: stages are idempotent)."""
    for lease in leases:
        rt.leases.discard(lease.job_id, lease.unit)
    try:
        with autocommit(rt.pool) as conn:
            store.release(conn, *leases)
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning(
            "lease_not_released",
            units=[lease.unit for lease in leases],
            error=" ".join(str(exc).split())[:200],
        )


@contextmanager
def holding(rt: Runtime, job_id: UUID, unit: str) -> Iterator[Lease | None]:
    """Hold `unit` for the block (None: another live worker holds it; do nothing)."""
    lease = take(rt, job_id, unit)
    try:
        yield lease
    finally:
        if lease is not None:
            release(rt, lease)


def fence(conn: psycopg.Connection, lease: Lease) -> None:
    """Raise LeaseLost unless `lease` is still current. Call in the transaction of the writes it guards:
    the lease row stays locked until commit, so the check and the writes are one step."""
    if not store.holds(conn, lease):
        raise LeaseLost(lease)


def check(rt: Runtime, lease: Lease) -> None:
    """Fence a step that is not a database write (a paid vendor call): a holder whose lease moved on
    neither pays nor writes."""
    with autocommit(rt.pool) as conn:
        fence(conn, lease)


def hold_queued(rt: Runtime, job_ids: list[UUID]) -> None:
    """In-process broker: the messages of `job_ids` live in this process's memory now. Their leases
    lapse with this process, so the next process on the database re-sends them at once."""
    if not job_ids:
        return
    with rt.pool.connection() as conn, conn.transaction():
        held = [
            store.put_over(conn, job_id, QUEUED, rt.leases.owner, rt.settings.lease_s) for job_id in job_ids
        ]
    for lease in held:
        rt.leases.add(lease)


def drop_queued(rt: Runtime, *job_ids: UUID) -> None:
    """The jobs are done: no message of theirs waits in this process any more."""
    for job_id in job_ids:
        rt.leases.discard(job_id, QUEUED)
    try:
        with autocommit(rt.pool) as conn:
            store.drop(conn, job_ids, QUEUED)
    except (psycopg.Error, PoolTimeout) as exc:  # it lapses with the process; its re-send finds the job done
        log.warning("lease_not_released", unit=QUEUED, error=" ".join(str(exc).split())[:200])


def abandon(rt: Runtime) -> None:
    """This process stops: whatever it still holds lapses now (a sweep on any host re-sends it)."""
    try:
        with autocommit(rt.pool) as conn:
            expired = store.expire(conn, rt.leases.owner)
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning("leases_not_abandoned", error=" ".join(str(exc).split())[:200])
        return
    if expired:
        log.info("leases_abandoned", count=expired)


def renew(rt: Runtime) -> int:
    """One heartbeat: renew every lease this process holds, in one statement."""
    held = rt.leases.snapshot()
    if not held:
        return 0
    with autocommit(rt.pool) as conn:
        renewed = store.renew(conn, rt.leases.owner, held, rt.settings.lease_s)
    if renewed < len(held):
        # Lost (taken over), or locked by a transaction of this process this beat (renewed next beat).
        log.info("leases_not_renewed", held=len(held), renewed=renewed)
    return renewed
