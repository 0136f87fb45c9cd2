"""Chunks waiting for upgrade: embedded by the mock standing in for the real service (hybrid mode), to be
re-embedded by the real model and moved to its space (`vectors.move_upgraded`). Also the schedule of the
periodic upgrade run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg

from ingest.db.rows import scalar

if TYPE_CHECKING:  # for annotations only: vectors loads numpy, which counting chunks never needs
    from ingest.store.vectors import Space


@dataclass(frozen=True, slots=True)
class Waiting:
    id: int
    text: str
    token_count: int


@dataclass(frozen=True, slots=True)
class Batch:
    document_id: UUID
    chunks: list[Waiting]


def mark(conn: psycopg.Connection, chunk_ids: Sequence[int]) -> None:
    """Mark the chunks' vectors for upgrade (chunks without a vector have nothing to upgrade)."""
    conn.execute(
        "UPDATE chunks SET awaiting_upgrade = true WHERE id = ANY(%s) AND space_id IS NOT NULL",
        (list(chunk_ids),),
    )


def count(conn: psycopg.Connection) -> int:
    return scalar(conn.execute("SELECT count(*) FROM chunks WHERE awaiting_upgrade"))


def count_for(conn: psycopg.Connection, document_id: UUID) -> int:
    return scalar(
        conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s AND awaiting_upgrade", (document_id,)
        )
    )


def count_for_job(conn: psycopg.Connection, job_id: UUID) -> int:
    """`count_for` the job's document, in one statement (0 when there is no such job)."""
    return scalar(
        conn.execute(
            "SELECT count(*) FROM jobs j JOIN chunks c ON c.document_id = j.document_id"
            " WHERE j.id = %s AND c.awaiting_upgrade",
            (job_id,),
        )
    )


def waiting_among(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> bool:
    """Whether any of the jobs' documents has a chunk waiting for upgrade (one statement)."""
    return bool(
        scalar(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs j JOIN chunks c ON c.document_id = j.document_id"
                " WHERE j.id = ANY(%s) AND c.awaiting_upgrade)",
                (list(job_ids),),
            )
        )
    )


def next_batch(conn: psycopg.Connection, limit: int) -> Batch | None:
    """Up to `limit` waiting chunks of the completed document waiting longest, all in one space.

    One document per batch, so its cost is the document's; completed documents only, so nothing is
    paid for a document that may still fail (and lose its chunks).
    """
    first = conn.execute(
        "SELECT c.document_id, c.space_id FROM chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE c.awaiting_upgrade AND d.status = 'completed' ORDER BY c.id LIMIT 1"
    ).fetchone()
    if first is None:
        return None
    document_id, space_id = first
    rows = conn.execute(
        "SELECT id, text, token_count FROM chunks WHERE document_id = %s AND space_id = %s AND awaiting_upgrade"
        " ORDER BY id LIMIT %s",
        (document_id, space_id, limit),
    ).fetchall()
    return Batch(document_id, [Waiting(*row) for row in rows])


def space_in_use(conn: psycopg.Connection, space: Space) -> bool:
    return scalar(conn.execute("SELECT EXISTS (SELECT 1 FROM chunks WHERE space_id = %s)", (space.id,)))


def claim_schedule(
    conn: psycopg.Connection, delay_s: float, token: datetime | None = None
) -> datetime | None:
    """Move the next periodic run to now + delay_s, when no run is pending (or `token` is the pending one,
    i.e. the caller is that run); return the new due time, or None when another run is pending."""
    row = conn.execute(
        "UPDATE upgrade_schedule SET due_at = now() + make_interval(secs => %(delay)s)"
        " WHERE due_at IS NULL OR due_at <= now() OR due_at = %(token)s RETURNING due_at",
        {"delay": delay_s, "token": token},
    ).fetchone()
    return None if row is None else row[0]
