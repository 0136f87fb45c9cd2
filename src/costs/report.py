"""Reports over the ledger: a budget day per service, cost per document and per job, estimate vs actual.

The JSON form (`ingest costs --json`, `GET /v1/costs`) writes every amount as a string holding the exact
decimal with at least 6 places ("0.000120", "0.00000002"): JSON numbers are floats to most readers, and
money is never a float. A missing limit is `null`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from costs import ledger, savings
from costs.ledger import ALL
from costs.money import ZERO, fmt_usd, total
from costs.prices import SERVICES


@dataclass(frozen=True, slots=True)
class Amounts:
    spent: Decimal = ZERO  # real charges
    reserved: Decimal = ZERO  # live reservations (not yet charged)
    simulated: Decimal = ZERO  # shadow costs of mock calls: never counted against a budget
    limit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class StageDrift:
    calls: int
    estimated: Decimal
    actual: Decimal

    @property
    def drift(self) -> Decimal:
        return self.actual - self.estimated


@dataclass(frozen=True, slots=True)
class DayReport:
    day: date
    timezone: str
    services: dict[str, Amounts]
    total: Amounts
    stages: dict[str, StageDrift]  # settled calls (real and shadow) of the day, by "service:stage"
    saved: savings.Saved = field(default_factory=savings.Saved)  # embeddings reused instead of paid for again
    # embedded through the Batch API: what the endpoint would have charged above the batch price
    batch_saved: savings.Saved = field(default_factory=savings.Saved)


# One pass over the day's rows: what each service spent, holds and shadow-spent.
_SUMS = """
coalesce(sum(amount_usd) FILTER (WHERE NOT simulated AND state IN ('charged', 'unknown')), 0),
coalesce(sum(amount_usd) FILTER (WHERE NOT simulated AND state = 'reserved' AND expires_at > %(at)s), 0),
coalesce(sum(amount_usd) FILTER (WHERE simulated AND state = 'charged'), 0)
"""
# `%(owner)s` NULL: the whole deployment; else the entries of that user's documents.
_OWNED = (
    " AND (%(owner)s::bigint IS NULL"
    " OR document_id IN (SELECT id FROM documents WHERE owner_id = %(owner)s::bigint))"
)
_AMOUNTS = f"SELECT service, {_SUMS} FROM cost_entries WHERE budget_day = %(day)s{_OWNED} GROUP BY service"
_STAGES = f"""
SELECT service || ':' || stage, count(*), sum(estimate_usd), sum(amount_usd)
FROM cost_entries WHERE budget_day = %(day)s AND state = 'charged'{_OWNED} GROUP BY 1 ORDER BY 1
"""


def day_report(
    conn: psycopg.Connection, day: date, *, tz: str, at: datetime, owner_id: int | None = None
) -> DayReport:
    """The day's report; with `owner_id`, only that user's own documents' costs, and none of the
    deployment's figures (limits, savings), which would tell a user what others spend."""
    params = {"day": day, "at": at, "owner": owner_id}
    rows = {
        service: (spent, reserved, simulated)
        for service, spent, reserved, simulated in conn.execute(_AMOUNTS, params)
    }
    limits = ledger.limits(conn) if owner_id is None else {}
    services: dict[str, Amounts] = {}
    for s in SERVICES:
        spent, reserved, simulated = rows.get(s, (ZERO, ZERO, ZERO))
        services[s] = Amounts(spent, reserved, simulated, limit=limits.get(s))
    overall = Amounts(
        spent=total([a.spent for a in services.values()]),
        reserved=total([a.reserved for a in services.values()]),
        simulated=total([a.simulated for a in services.values()]),
        limit=limits.get(ALL),
    )
    stages = {name: StageDrift(n, est, act) for name, n, est, act in conn.execute(_STAGES, params)}
    saved = savings.day_total(conn, day) if owner_id is None else savings.Saved()
    batch_saved = savings.day_total(conn, day, kind="batch", owner_id=owner_id)
    return DayReport(day, tz, services, overall, stages, saved, batch_saved)


def _by(conn: psycopg.Connection, column: str, ids: Iterable[UUID], at: datetime) -> dict[UUID, Amounts]:
    ids = list(ids)
    found = {
        row[0]: Amounts(*row[1:])
        for row in conn.execute(
            f"SELECT {column}, {_SUMS} FROM cost_entries WHERE {column} = ANY(%(ids)s) GROUP BY {column}",
            {"at": at, "ids": ids},
        )
    }
    return {i: found.get(i, Amounts()) for i in ids}


def by_documents(
    conn: psycopg.Connection, document_ids: Iterable[UUID], *, at: datetime
) -> dict[UUID, Amounts]:
    """Cost of each document over all days (documents without entries get zeros)."""
    return _by(conn, "document_id", document_ids, at)


def by_jobs(conn: psycopg.Connection, job_ids: Iterable[UUID], *, at: datetime) -> dict[UUID, Amounts]:
    return _by(conn, "job_id", job_ids, at)


def _amounts_json(a: Amounts) -> dict[str, Any]:
    return {
        "spent_usd": fmt_usd(a.spent),
        "reserved_usd": fmt_usd(a.reserved),
        "limit_usd": None if a.limit is None else fmt_usd(a.limit),
        "simulated_usd": fmt_usd(a.simulated),
    }


def to_json(report: DayReport) -> dict[str, Any]:
    return {
        "date": report.day.isoformat(),
        "timezone": report.timezone,
        "services": {name: _amounts_json(a) for name, a in report.services.items()},
        "total": _amounts_json(report.total),
        "stages": {
            name: {
                "calls": s.calls,
                "estimated_usd": fmt_usd(s.estimated),
                "actual_usd": fmt_usd(s.actual),
                "drift_usd": fmt_usd(s.drift),
            }
            for name, s in report.stages.items()
        },
        "batch_saved": {
            "chunks": report.batch_saved.chunks,
            "tokens": report.batch_saved.tokens,
            "saved_usd": fmt_usd(report.batch_saved.usd),
            "simulated_usd": fmt_usd(report.batch_saved.simulated_usd),
        },
    }
