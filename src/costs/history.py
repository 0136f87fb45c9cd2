"""Cost per budget day over a span of days: real charges and shadow costs by service, for a chart.

Scoped to one user, only entries of that user's documents count: money spent on a document that was
deleted since stays in the ledger (and in the whole-deployment history) but no longer has an owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

import psycopg

from costs.prices import SERVICES

_DAYS = """
SELECT e.budget_day, e.service,
       coalesce(sum(e.amount_usd) FILTER (WHERE NOT e.simulated), 0),
       coalesce(sum(e.amount_usd) FILTER (WHERE e.simulated), 0)
FROM cost_entries e
{join}
WHERE e.state = 'charged' AND e.budget_day BETWEEN %(first)s AND %(last)s {owner}
GROUP BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class DayCost:
    day: date
    spent: dict[str, Decimal] = field(default_factory=dict)  # real charges by service
    simulated: dict[str, Decimal] = field(default_factory=dict)  # shadow cost of mock calls by service


def span(last: date, days: int) -> list[date]:
    """The `days` budget days ending with `last`, oldest first."""
    return [last - timedelta(days=n) for n in range(days - 1, -1, -1)]


def daily(conn: psycopg.Connection, last: date, days: int, *, owner_id: int | None = None) -> list[DayCost]:
    """Every day of the span, oldest first, with zeros for days and services without charges."""
    wanted = span(last, days)
    sql = _DAYS.format(
        join="JOIN documents d ON d.id = e.document_id" if owner_id is not None else "",
        owner="AND d.owner_id = %(owner)s" if owner_id is not None else "",
    )
    found: dict[tuple[date, str], tuple[Decimal, Decimal]] = {
        (day, service): (spent, simulated)
        for day, service, spent, simulated in conn.execute(
            sql, {"first": wanted[0], "last": last, "owner": owner_id}
        )
    }
    zero = (Decimal(0), Decimal(0))
    return [
        DayCost(
            day,
            spent={s: found.get((day, s), zero)[0] for s in SERVICES},
            simulated={s: found.get((day, s), zero)[1] for s in SERVICES},
        )
        for day in wanted
    ]
