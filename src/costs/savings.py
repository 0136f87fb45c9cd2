"""What embedding reuse saved: recorded beside the ledger, in the transaction that stored the vectors.

A saving is priced like the call it replaced (at the configured real model, as shadow costs are), and
marked simulated when the space is a mock one. It never holds or counts against a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

import psycopg

from costs.money import ZERO
from ingest.db.rows import one


@dataclass(frozen=True, slots=True)
class Saving:
    key: str  # the ledger key of the batch the reuse belongs to
    service: str
    simulated: bool
    day: date
    chunks: int
    tokens: int
    usd: Decimal
    price_version: str
    document_id: UUID | None = None
    job_id: UUID | None = None
    kind: str = "reuse"  # 'reuse': the cache served the vectors; 'batch': the Batch API's lower price


@dataclass(frozen=True, slots=True)
class Saved:
    """A day's savings: chunks and tokens not sent, and their price (real and shadow)."""

    chunks: int = 0
    tokens: int = 0
    usd: Decimal = ZERO
    simulated_usd: Decimal = ZERO


def record(conn: psycopg.Connection, saving: Saving) -> None:
    """Record a saving once per key: a redelivered batch that reuses again adds nothing."""
    conn.execute(
        "INSERT INTO cost_savings (key, service, simulated, budget_day, chunks, tokens, saved_usd,"
        " price_version, document_id, job_id, kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (key) DO NOTHING",
        (
            saving.key,
            saving.service,
            saving.simulated,
            saving.day,
            saving.chunks,
            saving.tokens,
            saving.usd,
            saving.price_version,
            saving.document_id,
            saving.job_id,
            saving.kind,
        ),
    )


def day_total(
    conn: psycopg.Connection, day: date, *, kind: str = "reuse", owner_id: int | None = None
) -> Saved:
    """The day's savings of one kind: the deployment's, or those of one user's documents (`owner_id`)."""
    row = one(
        conn.execute(
            "SELECT coalesce(sum(s.chunks), 0), coalesce(sum(s.tokens), 0),"
            " coalesce(sum(s.saved_usd) FILTER (WHERE NOT s.simulated), 0),"
            " coalesce(sum(s.saved_usd) FILTER (WHERE s.simulated), 0)"
            " FROM cost_savings s WHERE s.budget_day = %(day)s AND s.kind = %(kind)s AND (%(owner)s::bigint IS NULL"
            " OR s.document_id IN (SELECT id FROM documents WHERE owner_id = %(owner)s))",
            {"day": day, "kind": kind, "owner": owner_id},
        )
    )
    return Saved(int(row[0]), int(row[1]), row[2], row[3])
