"""The cost ledger in SQL: one row per thing paid for, moving reserved → charged (or released / expired, or
unknown: charged although the call failed, because the vendor may have billed it).

Plain functions over a psycopg connection; callers own the transaction. A row is keyed by what is being
paid for (`key`, e.g. "<document>:parse") and whether it is a shadow (simulated) cost, and that pair is
unique: a redelivered message finds its row again instead of adding one.

`amount_usd` is what the row counts for: the estimate while reserved, the actual charge once charged,
zero once released or expired. A reservation counts against its budget day only until `expires_at`, so
a crashed worker's hold lapses by itself; `sweep_expired` merely records that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from costs.money import ZERO
from ingest.db.rows import one

COLUMNS = (
    "id, key, service, stage, simulated, state, budget_day, estimate_usd, amount_usd, estimate, usage,"
    " price_version, document_id, job_id, reserved_at, expires_at, settled_at, holder"
)
# Lock class of the per-budget-day advisory lock (any constant; the day's ordinal is the object id).
DAY_LOCK_CLASS = 0x636F7374
ALL = "all"  # the budget row limiting every service together


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    key: str
    service: str
    stage: str
    simulated: bool
    state: str  # reserved | charged | released | expired | unknown (charged, the call's outcome unknown)
    budget_day: date
    estimate_usd: Decimal
    amount_usd: Decimal
    estimate: dict[str, Any]
    usage: dict[str, Any] | None
    price_version: str
    document_id: UUID | None
    job_id: UUID | None
    reserved_at: datetime
    expires_at: datetime
    settled_at: datetime | None
    holder: str | None  # the job lease (its generation) whose call this is; None outside a lease

    def live(self, at: datetime) -> bool:
        """A reservation still holding budget at `at`."""
        return self.state == "reserved" and self.expires_at > at


@dataclass(frozen=True, slots=True)
class Hold:
    """What a reservation is for, before it has a row."""

    key: str
    service: str
    stage: str
    estimate_usd: Decimal
    estimate: Mapping[str, Any]
    price_version: str
    simulated: bool = False
    document_id: UUID | None = None
    job_id: UUID | None = None
    holder: str | None = None


# Why a reservation whose worker stopped before settling it is charged `unknown` (costs.budget.reserve,
# charge_abandoned); its holder may still settle it to its bill, or release it when its call was not billed.
LAPSED_REASON = "its worker stopped before settling the call; the vendor may have billed it"


def _cur(conn: psycopg.Connection) -> psycopg.Cursor[Entry]:
    return conn.cursor(row_factory=class_row(Entry))


def _params(hold: Hold, day: date, at: datetime, expires_at: datetime) -> dict[str, Any]:
    return {
        "key": hold.key,
        "service": hold.service,
        "stage": hold.stage,
        "simulated": hold.simulated,
        "day": day,
        "estimate_usd": hold.estimate_usd,
        "estimate": Jsonb(dict(hold.estimate)),
        "price_version": hold.price_version,
        "document_id": hold.document_id,
        "job_id": hold.job_id,
        "holder": hold.holder,
        "at": at,
        "expires_at": expires_at,
    }


def lock_day(conn: psycopg.Connection, day: date) -> None:
    """Serialise, until commit, everything that can add to the counted spend of `day`."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (DAY_LOCK_CLASS, day.toordinal()))


def find(conn: psycopg.Connection, key: str, *, simulated: bool) -> Entry | None:
    return (
        _cur(conn)
        .execute(
            f"SELECT {COLUMNS} FROM cost_entries WHERE key = %s AND simulated = %s FOR UPDATE",
            (key, simulated),
        )
        .fetchone()
    )


def find_many(conn: psycopg.Connection, keys: Sequence[str], *, simulated: bool) -> dict[str, Entry]:
    """`find` for many keys in one statement (rows locked in one order)."""
    rows = _cur(conn).execute(
        f"SELECT {COLUMNS} FROM cost_entries WHERE key = ANY(%s) AND simulated = %s ORDER BY key FOR UPDATE",
        (list(keys), simulated),
    )
    return {entry.key: entry for entry in rows}


def get(conn: psycopg.Connection, entry_id: int) -> Entry | None:
    return _cur(conn).execute(f"SELECT {COLUMNS} FROM cost_entries WHERE id = %s", (entry_id,)).fetchone()


def counted(conn: psycopg.Connection, day: date, at: datetime) -> dict[str, Decimal]:
    """Per service, what counts against the day's budget at `at`: charges and live reservations."""
    rows = conn.execute(
        "SELECT service, sum(amount_usd) FROM cost_entries"
        " WHERE budget_day = %s AND NOT simulated"
        " AND (state IN ('charged', 'unknown') OR (state = 'reserved' AND expires_at > %s)) GROUP BY service",
        (day, at),
    ).fetchall()
    return {service: amount for service, amount in rows}


def charged(conn: psycopg.Connection, day: date) -> dict[str, Decimal]:
    """Per service, the real charges of the day, `unknown` ones included (what alerts measure)."""
    rows = conn.execute(
        "SELECT service, sum(amount_usd) FROM cost_entries"
        " WHERE budget_day = %s AND NOT simulated AND state IN ('charged', 'unknown') GROUP BY service",
        (day,),
    ).fetchall()
    return {service: amount for service, amount in rows}


def limits(conn: psycopg.Connection) -> dict[str, Decimal]:
    """Daily limits by service ('all' for every service together); a missing row means no limit."""
    return dict(conn.execute("SELECT service, daily_limit_usd FROM cost_budgets").fetchall())


def set_limit(conn: psycopg.Connection, service: str, amount: Decimal) -> None:
    conn.execute(
        "INSERT INTO cost_budgets (service, daily_limit_usd) VALUES (%s, %s)"
        " ON CONFLICT (service) DO UPDATE SET daily_limit_usd = EXCLUDED.daily_limit_usd, updated_at = now()",
        (service, amount),
    )


def unset_limit(conn: psycopg.Connection, service: str) -> bool:
    """Remove a daily limit (spending becomes unlimited); False if there was none."""
    return conn.execute("DELETE FROM cost_budgets WHERE service = %s", (service,)).rowcount > 0


def put_reserved(
    conn: psycopg.Connection, hold: Hold, *, day: date, at: datetime, expires_at: datetime, reopen: int | None
) -> Entry | None:
    """Reserve the estimate: reopen a released or expired row, or insert one.

    None when a concurrent reserver of the same key won the insert (it then holds the reservation).
    """
    params = _params(hold, day, at, expires_at)
    if reopen is not None:
        return (
            _cur(conn)
            .execute(
                f"UPDATE cost_entries SET state = 'reserved', stage = %(stage)s, budget_day = %(day)s,"
                f" estimate_usd = %(estimate_usd)s, amount_usd = %(estimate_usd)s, estimate = %(estimate)s,"
                f" price_version = %(price_version)s, document_id = %(document_id)s, job_id = %(job_id)s,"
                f" holder = %(holder)s,"
                f" reserved_at = %(at)s, expires_at = %(expires_at)s, usage = NULL, settled_at = NULL"
                f" WHERE id = %(id)s AND state <> 'charged' RETURNING {COLUMNS}",
                {**params, "id": reopen},
            )
            .fetchone()
        )
    return (
        _cur(conn)
        .execute(
            f"INSERT INTO cost_entries (key, service, stage, simulated, state, budget_day, estimate_usd,"
            f" amount_usd, estimate, price_version, document_id, job_id, reserved_at, expires_at, holder)"
            f" VALUES (%(key)s, %(service)s, %(stage)s, %(simulated)s, 'reserved', %(day)s, %(estimate_usd)s,"
            f" %(estimate_usd)s, %(estimate)s, %(price_version)s, %(document_id)s, %(job_id)s, %(at)s,"
            f" %(expires_at)s, %(holder)s) ON CONFLICT (key, simulated) DO NOTHING RETURNING {COLUMNS}",
            params,
        )
        .fetchone()
    )


def put_shadow(
    conn: psycopg.Connection, hold: Hold, *, day: date, at: datetime, expires_at: datetime
) -> Entry:
    """A simulated reservation: one statement, no budget check (shadow costs never count)."""
    entry = (
        _cur(conn)
        .execute(
            f"INSERT INTO cost_entries (key, service, stage, simulated, state, budget_day, estimate_usd,"
            f" amount_usd, estimate, price_version, document_id, job_id, reserved_at, expires_at)"
            f" VALUES (%(key)s, %(service)s, %(stage)s, true, 'reserved', %(day)s, %(estimate_usd)s,"
            f" %(estimate_usd)s, %(estimate)s, %(price_version)s, %(document_id)s, %(job_id)s, %(at)s,"
            f" %(expires_at)s)"
            f" ON CONFLICT (key, simulated) DO UPDATE SET state = 'reserved',"
            f" budget_day = EXCLUDED.budget_day, estimate_usd = EXCLUDED.estimate_usd, amount_usd = EXCLUDED.amount_usd,"
            f" estimate = EXCLUDED.estimate, price_version = EXCLUDED.price_version,"
            f" reserved_at = EXCLUDED.reserved_at, expires_at = EXCLUDED.expires_at"
            f" WHERE cost_entries.state <> 'charged' RETURNING {COLUMNS}",
            _params(hold, day, at, expires_at),
        )
        .fetchone()
    )
    if entry is None:  # the key's entry is charged already: the conflict left it as it was
        entry = find(conn, hold.key, simulated=True)
    assert entry is not None  # it is the row the insert conflicted with
    return entry


def put_shadow_charges(
    conn: psycopg.Connection,
    charges: Sequence[tuple[Hold, Decimal, Mapping[str, Any]]],
    *,
    day: date,
    at: datetime,
) -> list[Entry]:
    """Simulated calls charged at once, without a reservation first (a shadow cost holds no budget): one
    statement for all of them, (hold, amount, usage) each. A key charged before keeps its charge (settling
    is once); return the rows charged now."""
    if not charges:
        return []
    return (
        _cur(conn)
        .execute(
            f"INSERT INTO cost_entries (key, service, stage, simulated, state, budget_day, estimate_usd,"
            f" amount_usd, estimate, usage, price_version, document_id, job_id, reserved_at, expires_at,"
            f" settled_at)"
            f" SELECT r.key, r.service, r.stage, true, 'charged', %(day)s, r.estimate_usd, r.amount_usd,"
            f" r.estimate, r.usage, r.price_version, r.document_id, r.job_id, %(at)s, %(at)s, %(at)s"
            f" FROM unnest(%(keys)s::text[], %(services)s::text[], %(stages)s::text[],"
            f" %(estimates_usd)s::numeric[], %(amounts)s::numeric[], %(estimates)s::jsonb[], %(usages)s::jsonb[],"
            f" %(versions)s::text[], %(documents)s::uuid[], %(jobs)s::uuid[])"
            f" AS r(key, service, stage, estimate_usd, amount_usd, estimate, usage, price_version, document_id,"
            f" job_id)"
            f" ON CONFLICT (key, simulated) DO UPDATE SET state = 'charged', budget_day = EXCLUDED.budget_day,"
            f" estimate_usd = EXCLUDED.estimate_usd, amount_usd = EXCLUDED.amount_usd,"
            f" estimate = EXCLUDED.estimate, usage = EXCLUDED.usage, price_version = EXCLUDED.price_version,"
            f" settled_at = EXCLUDED.settled_at"
            f" WHERE cost_entries.state <> 'charged' RETURNING {COLUMNS}",
            {
                "day": day,
                "at": at,
                "keys": [h.key for h, _, _ in charges],
                "services": [h.service for h, _, _ in charges],
                "stages": [h.stage for h, _, _ in charges],
                "estimates_usd": [h.estimate_usd for h, _, _ in charges],
                "amounts": [amount for _, amount, _ in charges],
                "estimates": [Jsonb(dict(h.estimate)) for h, _, _ in charges],
                "usages": [Jsonb(dict(usage)) for _, _, usage in charges],
                "versions": [h.price_version for h, _, _ in charges],
                "documents": [h.document_id for h, _, _ in charges],
                "jobs": [h.job_id for h, _, _ in charges],
            },
        )
        .fetchall()
    )


def extend(
    conn: psycopg.Connection, entry_id: int, expires_at: datetime, *, holder: str | None = None
) -> Entry:
    """A redelivery takes over a live reservation: it holds the same amount for a fresh ttl, under the
    redelivery's job lease when it has one."""
    return one(
        _cur(conn).execute(
            f"UPDATE cost_entries SET expires_at = greatest(expires_at, %s), holder = coalesce(%s, holder)"
            f" WHERE id = %s RETURNING {COLUMNS}",
            (expires_at, holder, entry_id),
        )
    )


def settle(
    conn: psycopg.Connection,
    entry_id: int,
    *,
    amount_usd: Decimal,
    usage: Mapping[str, Any],
    at: datetime,
    holder: str | None = None,
) -> Entry | None:
    """Turn the reservation into the actual charge; None when it was already charged (settling is once),
    or when `holder` is given and another job lease has taken the reservation over.

    A reservation that expired or was released while the call ran is charged too: the vendor billed it.
    """
    return (
        _cur(conn)
        .execute(
            f"UPDATE cost_entries SET state = 'charged', amount_usd = %s, usage = %s, settled_at = %s"
            f" WHERE id = %s AND state <> 'charged' AND (%s::text IS NULL OR holder = %s)"
            f" RETURNING {COLUMNS}",
            (amount_usd, Jsonb(dict(usage)), at, entry_id, holder, holder),
        )
        .fetchone()
    )


def settle_many(
    conn: psycopg.Connection, settled: Sequence[tuple[Entry, Decimal, Mapping[str, Any]]], *, at: datetime
) -> list[Entry]:
    """`settle` for many reservations in one statement, (reservation, amount, usage) each, each under its
    own holder: the rows charged now (one already charged, or taken over by another lease, is not)."""
    if not settled:
        return []
    return (
        _cur(conn)
        .execute(
            f"UPDATE cost_entries e SET state = 'charged', amount_usd = r.amount, usage = r.usage,"
            f" settled_at = %s"
            f" FROM unnest(%s::bigint[], %s::numeric[], %s::jsonb[], %s::text[]) AS r(id, amount, usage, holder)"
            f" WHERE e.id = r.id AND e.state <> 'charged' AND (r.holder IS NULL OR e.holder = r.holder)"
            f" RETURNING {', '.join('e.' + c.strip() for c in COLUMNS.split(','))}",
            (
                at,
                [entry.id for entry, _, _ in settled],
                [amount for _, amount, _ in settled],
                [Jsonb(dict(usage)) for _, _, usage in settled],
                [entry.holder for entry, _, _ in settled],
            ),
        )
        .fetchall()
    )


def put_charged(
    conn: psycopg.Connection,
    entry: Entry,
    *,
    key: str,
    amount_usd: Decimal,
    usage: Mapping[str, Any],
    at: datetime,
) -> Entry | None:
    """A charge of its own, under `key`, for a call made under `entry`'s reservation after another job
    lease took that reservation over (the vendor billed both calls); None when it is recorded already."""
    return (
        _cur(conn)
        .execute(
            f"INSERT INTO cost_entries (key, service, stage, simulated, state, budget_day, estimate_usd,"
            f" amount_usd, estimate, usage, price_version, document_id, job_id, reserved_at, expires_at,"
            f" settled_at, holder)"
            f" VALUES (%s, %s, %s, false, 'charged', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (key, simulated) DO NOTHING RETURNING {COLUMNS}",
            (
                key,
                entry.service,
                entry.stage,
                entry.budget_day,
                entry.estimate_usd,
                amount_usd,
                Jsonb(entry.estimate),
                Jsonb(dict(usage)),
                entry.price_version,
                entry.document_id,
                entry.job_id,
                entry.reserved_at,
                entry.expires_at,
                at,
                entry.holder,
            ),
        )
        .fetchone()
    )


def mark_unknown(
    conn: psycopg.Connection,
    entry_id: int,
    *,
    amount_usd: Decimal,
    usage: Mapping[str, Any],
    reason: str,
    at: datetime,
) -> Entry | None:
    """Charge a call the vendor may have billed although it failed (`unknown`, with the reason); None when
    the row is charged already. The row's key gets its id appended, freeing the key for the retried call."""
    return (
        _cur(conn)
        .execute(
            f"UPDATE cost_entries SET state = 'unknown', key = key || ':unknown:' || id, amount_usd = %s,"
            f" usage = %s, unknown_reason = %s, settled_at = %s"
            f" WHERE id = %s AND state IN ('reserved', 'released', 'expired') RETURNING {COLUMNS}",
            (amount_usd, Jsonb(dict(usage)), reason, at, entry_id),
        )
        .fetchone()
    )


def charge_abandoned(conn: psycopg.Connection, *, reason: str, at: datetime) -> list[Entry]:
    """Charge `unknown`, at their estimates, the reservations that stages made under a job lease and never
    settled (their workers stopped) once their jobs are final: no later delivery will settle them, and
    their calls may have reached the vendor. One statement; the rows charged now."""
    return (
        _cur(conn)
        .execute(
            f"UPDATE cost_entries c SET state = 'unknown', key = key || ':unknown:' || id,"
            f" amount_usd = estimate_usd, usage = estimate, unknown_reason = %s, settled_at = %s"
            f" WHERE NOT simulated AND holder IS NOT NULL"
            f" AND (state = 'expired' OR (state = 'reserved' AND expires_at <= %s))"
            f" AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = c.job_id AND j.status IN ('completed', 'failed'))"
            f" RETURNING {COLUMNS}",
            (reason, at, at),
        )
        .fetchall()
    )


def release(conn: psycopg.Connection, entry_id: int, holder: str | None = None) -> bool:
    """Give the reserved amount back (the call failed and was not billed), unless another lease's call
    holds the row by now. A row charged `unknown` because its holder seemed to have stopped is given back
    too: the holder, awake, knows its call was not billed."""
    row = conn.execute(
        "UPDATE cost_entries SET state = 'released', amount_usd = 0, unknown_reason = NULL"
        " WHERE id = %s AND holder IS NOT DISTINCT FROM %s"
        " AND (state = 'reserved' OR (state = 'unknown' AND unknown_reason = %s))"
        " RETURNING id",
        (entry_id, holder, LAPSED_REASON),
    ).fetchone()
    return row is not None


def sweep_expired(conn: psycopg.Connection, at: datetime) -> int:
    """Record reservations past their expiry as expired (they stopped counting at expiry already)."""
    cur = conn.execute(
        "UPDATE cost_entries SET state = 'expired', amount_usd = %s"
        " WHERE state = 'reserved' AND expires_at <= %s",
        (ZERO, at),
    )
    return cur.rowcount


def charged_under(conn: psycopg.Connection, prefix: str) -> Decimal:
    """What the real calls whose keys start with `prefix` were charged (settled or `unknown`), exactly."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    row = conn.execute(
        "SELECT coalesce(sum(amount_usd), 0) FROM cost_entries"
        " WHERE key LIKE %s AND NOT simulated AND state IN ('charged', 'unknown')",
        (pattern,),
    ).fetchone()
    return Decimal(row[0]) if row else Decimal(0)
