"""Webhook bookkeeping: inbound vendor events already handled, and every outbound callback attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import class_row


@dataclass(slots=True)
class CallbackAttempt:
    id: int
    document_id: UUID
    webhook_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def record_event(conn: psycopg.Connection, event_id: str, event_type: str, vendor_job_id: str) -> bool:
    """Remember an inbound event; False when its id was seen before (a replay or a vendor retry).

    A concurrent delivery of the same id waits on the unique index until this transaction ends, so of
    two racing deliveries exactly one is new.
    """
    row = conn.execute(
        "INSERT INTO webhook_events (event_id, event_type, vendor_job_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        (event_id, event_type, vendor_job_id),
    ).fetchone()
    return row is not None


def record_attempt(
    conn: psycopg.Connection,
    *,
    document_id: UUID,
    webhook_id: str,
    event_type: str,
    status_code: int | None,
    error: str | None,
) -> int:
    """Record one delivery attempt of a callback; return its number (1 for the first)."""
    row = conn.execute(
        "INSERT INTO callback_attempts (document_id, webhook_id, event_type, attempt, status_code, error)"
        " SELECT %s, %s, %s, coalesce(max(attempt), 0) + 1, %s, %s FROM callback_attempts"
        " WHERE webhook_id = %s RETURNING attempt",
        (document_id, webhook_id, event_type, status_code, error, webhook_id),
    ).fetchone()
    assert row is not None  # INSERT ... SELECT over an aggregate always yields one row
    return int(row[0])


def attempts_made(conn: psycopg.Connection, webhook_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM callback_attempts WHERE webhook_id = %s", (webhook_id,)
    ).fetchone()
    return int(row[0]) if row else 0


def attempts_for_document(conn: psycopg.Connection, document_id: UUID) -> list[CallbackAttempt]:
    cur = conn.cursor(row_factory=class_row(CallbackAttempt))
    return cur.execute(
        "SELECT id, document_id, webhook_id, event_type, attempt, status_code, error, at"
        " FROM callback_attempts WHERE document_id = %s ORDER BY id",
        (document_id,),
    ).fetchall()
