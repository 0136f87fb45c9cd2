"""The batch route's tables: which jobs take it, the inputs waiting for a batch, and the batches we sent.

Plain functions over a connection; callers own transactions (migration 0014 describes the tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from ingest.db.rows import scalar

ROUTES = ("sync", "batch")
FALLBACKS = ("batch", "sync")


@dataclass(frozen=True, slots=True)
class Route:
    route: str  # 'sync' | 'batch'
    fallback: str  # 'batch' | 'sync'


@dataclass(frozen=True, slots=True)
class Item:
    """One chunk's input on the batch route."""

    chunk_id: int
    job_id: UUID | None  # the job's input, or (None) the reembed run's
    run_id: int | None
    document_id: UUID
    text: str
    tokens: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Batch:
    id: UUID
    client: str
    model: str
    dimensions: int
    status: str
    vendor_status: str | None
    input_file_id: str | None
    vendor_batch_id: str | None
    requests: int
    expires_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Waiting:
    """What `ingest status` and the API show of a job waiting for a batch."""

    vendor_batch_id: str | None  # None while the batch is being sent
    expires_at: datetime | None


_BATCH = (
    "id, client, model, dimensions, status, vendor_status, input_file_id, vendor_batch_id, requests,"
    " expires_at, updated_at"
)
ITEM_SELECT = (
    "SELECT i.chunk_id, i.job_id, i.run_id, c.document_id, c.text, i.tokens, i.attempts"
    " FROM embedding_batch_items i"
    " JOIN chunks c ON c.id = i.chunk_id"
)


def set_route(conn: psycopg.Connection, job_id: UUID, route: Route) -> None:
    conn.execute(
        "UPDATE jobs SET embed_route = %s, batch_fallback = %s WHERE id = %s",
        (route.route, route.fallback, job_id),
    )


def route_of(conn: psycopg.Connection, job_id: UUID) -> Route | None:
    row = conn.execute("SELECT embed_route, batch_fallback FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else Route(row[0], row[1])


def batch_routed(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> set[UUID]:
    """The jobs among `job_ids` whose embeddings go through the Batch API (one statement)."""
    rows = conn.execute(
        "SELECT id FROM jobs WHERE id = ANY(%s) AND embed_route = 'batch'", (list(job_ids),)
    ).fetchall()
    return {job_id for (job_id,) in rows}


def queue_missing(conn: psycopg.Connection, job_id: UUID, document_id: UUID) -> int:
    """Queue every chunk of the document still without a vector (once: a chunk already queued stays as
    it is); return how many were queued now."""
    return conn.execute(
        "INSERT INTO embedding_batch_items (chunk_id, job_id, tokens)"
        " SELECT id, %s, token_count FROM chunks WHERE document_id = %s AND space_id IS NULL"
        " ON CONFLICT (chunk_id) DO NOTHING",
        (job_id, document_id),
    ).rowcount


def pending(conn: psycopg.Connection) -> list[Item]:
    """Inputs waiting for a batch, of running jobs, oldest first and a job's together."""
    return (
        conn.cursor(row_factory=class_row(Item))
        .execute(
            f"{ITEM_SELECT} JOIN jobs j ON j.id = i.job_id WHERE i.batch_id IS NULL AND j.status = 'running'"
            " ORDER BY i.queued_at, i.job_id, c.ordinal"
        )
        .fetchall()
    )


def oldest_pending_s(conn: psycopg.Connection) -> float | None:
    """Seconds the oldest waiting input of a job has waited (None when none waits; a reembed run's go at
    once)."""
    value = scalar(
        conn.execute(
            "SELECT extract(epoch FROM now() - min(queued_at)) FROM embedding_batch_items"
            " WHERE batch_id IS NULL AND job_id IS NOT NULL"
        )
    )
    return None if value is None else float(value)


def jobs_still_coming(conn: psycopg.Connection) -> int:
    """Batch route jobs queued or running that have not queued their inputs yet (being parsed)."""
    return int(
        scalar(
            conn.execute(
                "SELECT count(*) FROM jobs WHERE embed_route = 'batch' AND status IN ('queued', 'running')"
                " AND stage NOT IN ('batch', 'done')"
            )
        )
    )


def create(
    conn: psycopg.Connection,
    batch_id: UUID,
    *,
    client: str,
    model: str,
    dimensions: int,
    chunk_ids: list[int],
    input_bytes: int,
) -> int:
    """Record a batch and assign it the inputs still waiting among `chunk_ids`; return how many it got."""
    conn.execute(
        "INSERT INTO embedding_batches (id, client, model, dimensions, requests, input_bytes)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (batch_id, client, model, dimensions, len(chunk_ids), input_bytes),
    )
    return conn.execute(
        "UPDATE embedding_batch_items SET batch_id = %s, attempts = attempts + 1"
        " WHERE chunk_id = ANY(%s) AND batch_id IS NULL",
        (batch_id, chunk_ids),
    ).rowcount


def open_batches(conn: psycopg.Connection) -> list[Batch]:
    return (
        conn.cursor(row_factory=class_row(Batch))
        .execute(f"SELECT {_BATCH} FROM embedding_batches WHERE status <> 'done' ORDER BY created_at")
        .fetchall()
    )


def get(conn: psycopg.Connection, batch_id: UUID) -> Batch | None:
    return (
        conn.cursor(row_factory=class_row(Batch))
        .execute(f"SELECT {_BATCH} FROM embedding_batches WHERE id = %s", (batch_id,))
        .fetchone()
    )


def items_of(conn: psycopg.Connection, batch_id: UUID) -> list[Item]:
    return (
        conn.cursor(row_factory=class_row(Item))
        .execute(f"{ITEM_SELECT} WHERE i.batch_id = %s ORDER BY i.job_id, i.run_id, c.ordinal", (batch_id,))
        .fetchall()
    )


def record_file(conn: psycopg.Connection, batch_id: UUID, input_file_id: str) -> None:
    conn.execute(
        "UPDATE embedding_batches SET input_file_id = %s, updated_at = now() WHERE id = %s",
        (input_file_id, batch_id),
    )


def record_vendor(
    conn: psycopg.Connection,
    batch_id: UUID,
    *,
    vendor_batch_id: str,
    vendor_status: str,
    expires_at: datetime | None,
) -> None:
    """The vendor's batch exists: recorded before anything waits on it."""
    conn.execute(
        "UPDATE embedding_batches SET vendor_batch_id = %s, vendor_status = %s, expires_at = %s,"
        " status = 'submitted', updated_at = now() WHERE id = %s",
        (vendor_batch_id, vendor_status, expires_at, batch_id),
    )


def record_status(conn: psycopg.Connection, batch_id: UUID, vendor_status: str) -> None:
    conn.execute(
        "UPDATE embedding_batches SET vendor_status = %s, updated_at = now() WHERE id = %s",
        (vendor_status, batch_id),
    )


def finish(conn: psycopg.Connection, batch_id: UUID, vendor_status: str, error: str | None) -> None:
    conn.execute(
        "UPDATE embedding_batches SET status = 'done', vendor_status = %s, error = %s, updated_at = now()"
        " WHERE id = %s",
        (vendor_status, error, batch_id),
    )


def without_vector(conn: psycopg.Connection, chunk_ids: list[int]) -> set[int]:
    """Which of these chunks still exist without a vector (a batch answer stores only those)."""
    rows = conn.execute("SELECT id FROM chunks WHERE id = ANY(%s) AND space_id IS NULL", (chunk_ids,))
    return {chunk_id for (chunk_id,) in rows}


def remove(conn: psycopg.Connection, chunk_ids: list[int]) -> None:
    """Inputs that are done with the batch route (embedded, or sent the synchronous way)."""
    conn.execute("DELETE FROM embedding_batch_items WHERE chunk_id = ANY(%s)", (chunk_ids,))


def requeue(conn: psycopg.Connection, chunk_ids: list[int], *, refunded: list[int] | None = None) -> None:
    """Inputs a batch did not embed wait for the next one; for those in `refunded` that batch is not
    counted as one of their attempts."""
    conn.execute(
        "UPDATE embedding_batch_items SET batch_id = NULL, queued_at = now(),"
        " attempts = attempts - (chunk_id = ANY(%s))::int WHERE chunk_id = ANY(%s)",
        (refunded or [], chunk_ids),
    )


def go_sync(conn: psycopg.Connection, job_id: UUID) -> None:
    """The job's inputs leave the batch route: its remaining chunks are embedded synchronously."""
    conn.execute("DELETE FROM embedding_batch_items WHERE job_id = %s", (job_id,))
    conn.execute(
        "UPDATE jobs SET embed_route = 'sync', stage = 'embed', updated_at = now() WHERE id = %s", (job_id,)
    )


def waiting(conn: psycopg.Connection, job_ids: list[UUID]) -> dict[UUID, Waiting]:
    """The batch each of these jobs waits for (the one sent last; none while its inputs gather)."""
    rows = conn.execute(
        "SELECT j.id, b.vendor_batch_id, b.expires_at FROM jobs j"
        " LEFT JOIN LATERAL (SELECT b.vendor_batch_id, b.expires_at FROM embedding_batch_items i"
        "   JOIN embedding_batches b ON b.id = i.batch_id WHERE i.job_id = j.id"
        "   ORDER BY b.created_at DESC LIMIT 1) b ON true"
        " WHERE j.id = ANY(%s) AND j.stage = 'batch' AND j.status = 'running'",
        (job_ids,),
    ).fetchall()
    return {job_id: Waiting(vendor_id, expires) for job_id, vendor_id, expires in rows}
