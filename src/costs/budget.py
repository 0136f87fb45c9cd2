"""Daily budgets: the budget day, and reserving an estimate so that no limit can be overshot.

The budget day is the calendar day of the settings' time zone (`INGEST_BUDGET_TIMEZONE`, default UTC);
the clock is passed in, never read here.

Why reservations cannot overshoot: every reservation that counts against a day takes that day's
PostgreSQL advisory lock (transaction-scoped) before it reads what the day has counted, and inserts its
row before the lock is released at commit. So the check "counted + estimate ≤ limit" and the write that
depends on it run as one step across all threads, processes and machines sharing the database: it is
the serial order a serialisable transaction would give, without retries. Each check covers the
service's own limit and the all-services limit together. Settling only lowers a row to the actual
charge when the estimate was an upper bound (exact for PDF pages and for tokens); when a vendor bills
more than the estimate the ledger records the bill and the meter logs the overrun.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import psycopg

from costs import ledger
from costs.ledger import ALL, Entry, Hold
from costs.money import ZERO, fmt_usd, total


class BudgetExhausted(Exception):
    """The estimate does not fit in what is left of today's budget; retry at `resume_at`."""

    def __init__(
        self, reason: str, *, service: str, limit_of: str, day: date, resume_at: datetime, now: datetime
    ):
        super().__init__(reason)
        self.service = service
        self.limit_of = limit_of  # the service whose limit refused, or "all"
        self.day = day
        self.resume_at = resume_at
        self.now = now

    @property
    def delay_s(self) -> int:
        return seconds_until(self.resume_at, self.now)


def seconds_until(later: datetime, now: datetime) -> int:
    """Whole seconds from `now` to `later`, rounded up (a deferred job never wakes early), at least 1."""
    return max(1, math.ceil((later - now).total_seconds()))


def budget_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def day_start(day: date, tz: str) -> datetime:
    """The first instant of `day` in the time zone, in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def next_day_start(at: datetime, tz: str) -> datetime:
    return day_start(budget_day(at, tz) + timedelta(days=1), tz)


def refusal(
    service: str, estimate: Decimal, counted: dict[str, Decimal], limits: dict[str, Decimal]
) -> str | None:
    """Which limit `estimate` would break, or None when it fits both the service's and the overall one."""
    for limit_of, used in ((service, counted.get(service, ZERO)), (ALL, total(list(counted.values())))):
        limit = limits.get(limit_of)
        if limit is not None and total([used, estimate]) > limit:
            return limit_of
    return None


def has_room(service: str, counted: dict[str, Decimal], limits: dict[str, Decimal]) -> bool:
    """Whether anything at all is left for `service` (the router's budget_ok)."""
    for limit_of, used in ((service, counted.get(service, ZERO)), (ALL, total(list(counted.values())))):
        limit = limits.get(limit_of)
        if limit is not None and used >= limit:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Reserved:
    """A reservation (or the budget's refusal), and the reservation of the same key that an earlier holder
    left unsettled, now charged `unknown` (see `reserve`)."""

    entry: Entry | None
    lapsed: Entry | None = None
    refused: BudgetExhausted | None = None  # set (and `entry` None) when the budget has no room


def left_unsettled(existing: Entry, hold: Hold, *, resumes: bool) -> bool:
    """Whether `existing` is a reservation another job lease made and never settled (its worker was
    killed or froze) for a call that `hold` will make again. Its call may have reached the vendor, who
    billed it; a holder that `resumes` the same vendor job makes no second call."""
    return (
        not resumes
        and existing.state in ("reserved", "expired")
        and existing.holder is not None
        and hold.holder is not None
        and existing.holder != hold.holder
    )


def reserve_many(
    conn: psycopg.Connection, holds: Sequence[Hold], *, at: datetime, tz: str, ttl_s: int
) -> list[Entry]:
    """`reserve` for many real holds in order, under one lock of the day and one count of it: the entries
    of those that fit, up to the first the budget refuses or whose key another job lease left unsettled
    (it and the rest are not reserved here: `reserve` then gives the refusal, or charges the stopped
    holder's reservation `unknown` first). Call inside a transaction."""
    day = budget_day(at, tz)
    expires_at = at + timedelta(seconds=ttl_s)
    ledger.lock_day(conn, day)
    existing = ledger.find_many(conn, [hold.key for hold in holds], simulated=False)
    counted = ledger.counted(conn, day, at)
    limits = ledger.limits(conn)
    swept = False
    out: list[Entry] = []
    for hold in holds:
        assert not hold.simulated  # a shadow cost holds no budget: `reserve` writes it alone
        found = existing.get(hold.key)
        if found is not None and found.state == "charged":
            out.append(found)
            continue
        if found is not None and left_unsettled(found, hold, resumes=False):
            break
        if found is not None and found.live(at):
            out.append(ledger.extend(conn, found.id, expires_at, holder=hold.holder))
            continue
        if refusal(hold.service, hold.estimate_usd, counted, limits) is not None:
            break
        if not swept:
            ledger.sweep_expired(conn, at)
            swept = True
        entry = ledger.put_reserved(
            conn, hold, day=day, at=at, expires_at=expires_at, reopen=found.id if found is not None else None
        )
        if entry is None:  # a reserver of the same key under another day's lock (across midnight) was first
            entry = ledger.find(conn, hold.key, simulated=False)
        assert entry is not None
        counted[hold.service] = total([counted.get(hold.service, ZERO), hold.estimate_usd])
        out.append(entry)
    return out


def reserve(
    conn: psycopg.Connection, hold: Hold, *, at: datetime, tz: str, ttl_s: int, resumes: bool = False
) -> Reserved:
    """Hold `hold.estimate_usd` against today's budget, or raise BudgetExhausted. Call inside a transaction.

    The same key again returns its row: a charged one as it is (never charged twice); a released one is
    reserved anew. An unsettled reservation of another job lease (`left_unsettled`) is charged `unknown`
    at its estimate, so the ledger never reads less than the vendor's bill, and this call reserves anew
    (its holder, should it wake, settles its own row to what it was billed). A live reservation that
    `resumes` takes over gets a fresh expiry under the new holder.
    """
    day = budget_day(at, tz)
    expires_at = at + timedelta(seconds=ttl_s)
    if hold.simulated:
        return Reserved(ledger.put_shadow(conn, hold, day=day, at=at, expires_at=expires_at))
    ledger.lock_day(conn, day)
    existing = ledger.find(conn, hold.key, simulated=False)
    if existing is not None and existing.state == "charged":
        return Reserved(existing)
    lapsed = None
    if existing is not None and left_unsettled(existing, hold, resumes=resumes):
        lapsed = ledger.mark_unknown(
            conn,
            existing.id,
            amount_usd=existing.estimate_usd,
            usage=existing.estimate,
            reason=ledger.LAPSED_REASON,
            at=at,
        )
        existing = None
    if existing is not None and existing.live(at):
        return Reserved(ledger.extend(conn, existing.id, expires_at, holder=hold.holder))
    counted = ledger.counted(conn, day, at)
    limits = ledger.limits(conn)
    limit_of = refusal(hold.service, hold.estimate_usd, counted, limits)
    if limit_of is not None:
        used = counted.get(hold.service, ZERO) if limit_of != ALL else total(list(counted.values()))
        if hold.estimate_usd > limits[limit_of]:
            why = f"the estimate ${fmt_usd(hold.estimate_usd)} exceeds the whole daily limit"
        else:
            why = "the daily budget is spent"
        of = f"{limit_of} ${fmt_usd(used)} of ${fmt_usd(limits[limit_of])} used on {day}"
        refused = BudgetExhausted(
            f"{hold.service}: {why} ({of})",
            service=hold.service,
            limit_of=limit_of,
            day=day,
            resume_at=next_day_start(at, tz),
            now=at,
        )
        if lapsed is None:
            raise refused
        return Reserved(None, lapsed, refused)  # the stopped holder's charge commits; the caller raises
    ledger.sweep_expired(conn, at)
    reopen = existing.id if existing is not None else None
    entry = ledger.put_reserved(conn, hold, day=day, at=at, expires_at=expires_at, reopen=reopen)
    if entry is None:  # a reserver of the same key under another day's lock (across midnight) was first
        entry = ledger.find(conn, hold.key, simulated=False)
    return Reserved(entry, lapsed)


def budget_left(conn: psycopg.Connection, service: str, *, at: datetime, tz: str) -> bool:
    return has_room(service, ledger.counted(conn, budget_day(at, tz), at), ledger.limits(conn))
