"""The meter: the thin shell a worker puts around every billable call.

    estimate = meter.parse_estimate(pages)            # or meter.embed_charge(tokens)
    held = meter.reserve(key=..., service=..., stage=..., estimate=estimate, simulated=...)
    try:
        result = client.call(...)
    except BaseException:
        meter.release(held)
        raise
    meter.settle(held, actual)                         # the reservation becomes the charge, once

`reserve` raises BudgetExhausted (with `resume_at`, the next budget day) when the estimate does not fit.
Mock calls go through the same steps with `simulated=True`: they record the shadow cost (what the real
service would have charged) and never touch a budget. `budget_ok` answers the router's question: is any
budget left for this service today?
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

import psycopg
import structlog
from prometheus_client import Counter, Histogram
from psycopg_pool import ConnectionPool

from costs import alerts, budget, charges, ledger
from costs import report as reports
from costs.budget import BudgetExhausted
from costs.charges import Charge
from costs.ledger import Entry, Hold
from costs.money import ZERO, fmt_usd
from costs.prices import PriceTable, price_table
from ingest.config import Settings
from ingest.db.pool import autocommit
from ingest.formats.pages import PageCount

log = structlog.get_logger(__name__)

Reservation = Entry

ESTIMATE_DRIFT = Histogram(
    "ingest_cost_estimate_drift_ratio",
    "(actual - estimate) / estimate of each settled call.",
    ["service", "stage", "simulated"],
    buckets=(-1.0, -0.5, -0.2, -0.05, -0.001, 0.001, 0.05, 0.2, 0.5, 1.0, float("inf")),
)
CHARGED = Counter(
    "ingest_cost_charged_usd", "Dollars charged (a metric; the ledger is exact).", ["service", "simulated"]
)

__all__ = ["BudgetExhausted", "Charge", "Meter", "Reservation", "Shadow", "Wanted"]


@dataclass(frozen=True, slots=True)
class Shadow:
    """A simulated call made, to be charged its shadow cost (`Meter.charge_shadows`)."""

    key: str
    service: str
    stage: str
    estimate: Charge
    actual: Charge
    document_id: UUID | None = None
    job_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Wanted:
    """A real call's share to reserve (`Meter.reserve_many`), under the job lease `holder`."""

    key: str
    service: str
    stage: str
    estimate: Charge
    document_id: UUID | None = None
    job_id: UUID | None = None
    holder: str | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Meter:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        *,
        clock: Callable[[], datetime] = utc_now,
        prices: PriceTable | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.clock = clock  # tests turn it to roll the budget day over
        self.prices = prices or price_table(settings)

    # --- pricing (pure, with this process's settings) ----------------------------------------------
    def parse_estimate(self, pages: PageCount) -> Charge:
        return charges.parse_estimate(pages, tier=self.settings.llamaparse_tier, prices=self.prices)

    def parse_actual(
        self, *, pages: int, credits: int, vendor_job_id: str | None, estimate: Charge
    ) -> Charge:
        return charges.parse_actual(
            pages=pages,
            credits=credits,
            vendor_job_id=vendor_job_id,
            estimated_pages=int(estimate.usage.get("pages", 0)),
            tier=self.settings.llamaparse_tier,
            prices=self.prices,
        )

    def embed_charge(self, tokens: int, *, requests: int = 1, model: str | None = None) -> Charge:
        """Priced at `model` (default: the configured real model), for real calls and mock (shadow) calls
        alike."""
        return charges.embed_charge(
            tokens, model=model or self.settings.openai_embedding_model, prices=self.prices, requests=requests
        )

    def batch_embed_charge(self, tokens: int, *, requests: int = 1, model: str | None = None) -> Charge:
        """Through the Batch API, priced at `model` (default: the configured real model), for real calls
        and mock (shadow) calls alike."""
        return charges.batch_embed_charge(
            tokens, model=model or self.settings.openai_embedding_model, prices=self.prices, requests=requests
        )

    # --- the budget day ----------------------------------------------------------------------------
    def today(self) -> date:
        return budget.budget_day(self.clock(), self.settings.budget_timezone)

    def next_day_start(self) -> datetime:
        return budget.next_day_start(self.clock(), self.settings.budget_timezone)

    def seconds_to_next_day(self) -> int:
        now = self.clock()
        return budget.seconds_until(budget.next_day_start(now, self.settings.budget_timezone), now)

    # --- reserve, settle, release ----------------------------------------------------------------
    def reserve(
        self,
        *,
        key: str,
        service: str,
        stage: str,
        estimate: Charge,
        simulated: bool = False,
        document_id: UUID | None = None,
        job_id: UUID | None = None,
        holder: str | None = None,
        ttl_s: int | None = None,
        resumes: bool = False,
    ) -> Reservation:
        """`ttl_s`: how long the hold lasts unsettled (default reservation_ttl_s; a batch's, its window).
        `resumes`: the call resumes a vendor job an earlier holder of the key started (no second bill)."""
        hold = self._hold(key, service, stage, estimate, simulated, document_id, job_id, holder)
        at = self.clock()
        # A shadow reservation is one statement (no budget to check): it needs no transaction around it.
        connection = autocommit(self.pool) if simulated else self._transaction()
        try:
            with connection as conn:
                reserved = budget.reserve(
                    conn,
                    hold,
                    at=at,
                    tz=self.settings.budget_timezone,
                    ttl_s=ttl_s or self.settings.reservation_ttl_s,
                    resumes=resumes,
                )
            if reserved.lapsed is not None:
                self._charged_lapsed(reserved.lapsed)
            if reserved.refused is not None:
                raise reserved.refused
        except BudgetExhausted as refused:
            log.info(
                "budget_refused",
                key=key,
                service=service,
                estimate_usd=fmt_usd(estimate.usd),
                reason=str(refused),
            )
            self._alert(refused.day, service, refused_by=refused.limit_of)
            raise
        entry = reserved.entry
        assert entry is not None  # not refused
        log.debug(
            "budget_reserved",
            key=key,
            service=service,
            state=entry.state,
            estimate_usd=fmt_usd(entry.estimate_usd),
        )
        return entry

    def charge_shadows(self, conn: psycopg.Connection, calls: Sequence[Shadow]) -> None:
        """Mock calls made without a reservation (a shadow cost holds no budget, so none is needed before
        the call): their shadow charges in one statement, in the caller's transaction, so they commit with
        what the calls produced (a batch redelivered before that commit charges them then, once)."""
        holds = [
            (
                self._hold(c.key, c.service, c.stage, c.estimate, True, c.document_id, c.job_id, None),
                c.actual.usd,
                c.actual.usage,
            )
            for c in calls
        ]
        charged = ledger.put_shadow_charges(conn, holds, day=self.today(), at=self.clock())
        for entry in charged:
            self._observe(entry, logged=False)
        if charged:  # one line for the lot: a line per document would cost more than its statement
            log.info(
                "shadow_costs_charged",
                entries=len(charged),
                services=sorted({e.service for e in charged}),
                amount_usd=fmt_usd(sum((e.amount_usd for e in charged), start=ZERO)),
            )

    def reserve_many(self, wanted: Sequence[Wanted]) -> list[Reservation]:
        """`reserve` for many real calls' shares in one transaction, in order: the reservations of those
        that fit, up to the first the budget refuses (`reserve` it alone to get the refusal)."""
        holds = [
            self._hold(w.key, w.service, w.stage, w.estimate, False, w.document_id, w.job_id, w.holder)
            for w in wanted
        ]
        if not holds:
            return []
        with self._transaction() as conn:
            entries = budget.reserve_many(
                conn,
                holds,
                at=self.clock(),
                tz=self.settings.budget_timezone,
                ttl_s=self.settings.reservation_ttl_s,
            )
        log.debug("budget_reserved_many", wanted=len(holds), reserved=len(entries))
        return entries

    def _hold(
        self,
        key: str,
        service: str,
        stage: str,
        estimate: Charge,
        simulated: bool,
        document_id: UUID | None,
        job_id: UUID | None,
        holder: str | None,
    ) -> Hold:
        """What a reservation or a charge records of a call, priced with this meter's price table."""
        return Hold(
            key=key,
            service=service,
            stage=stage,
            estimate_usd=estimate.usd,
            estimate=estimate.usage,
            price_version=self.prices.version,
            simulated=simulated,
            document_id=document_id,
            job_id=job_id,
            holder=holder,
        )

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    def settle(self, reservation: Reservation, actual: Charge) -> Entry:
        """Charge `actual` for the reservation; a second settle of the same key changes nothing."""
        log_ = log.bind(key=reservation.key, service=reservation.service, stage=reservation.stage)
        with autocommit(self.pool) as conn:  # one UPDATE: its own transaction, no BEGIN/COMMIT round trips
            entry = ledger.settle(
                conn,
                reservation.id,
                amount_usd=actual.usd,
                usage=actual.usage,
                at=self.clock(),
                holder=reservation.holder,
            )
            if entry is None and self._taken_over(conn, reservation):
                # This worker froze in its call; the job lease and the reservation moved to a worker that
                # made the call again. The vendor billed both: this one is charged on a row of its own.
                own_key = f"{reservation.key}#{reservation.holder}"
                log_.warning("cost_of_a_lapsed_lease", holder=reservation.holder, usd=fmt_usd(actual.usd))
                entry = ledger.put_charged(
                    conn, reservation, key=own_key, amount_usd=actual.usd, usage=actual.usage, at=self.clock()
                )
                if entry is None:  # settled before: settling is once
                    return ledger.find(conn, own_key, simulated=False)  # type: ignore[return-value]
            if entry is None:
                if not reservation.simulated:
                    # A redelivery that reached the vendor again: the ledger keeps one charge per key.
                    log_.warning("cost_already_charged", repeat_usd=fmt_usd(actual.usd))
                return ledger.get(conn, reservation.id)  # type: ignore[return-value]
        self._observe(entry)
        if not entry.simulated:
            if entry.amount_usd > entry.estimate_usd:
                log_.warning(
                    "cost_overrun",
                    estimate_usd=fmt_usd(entry.estimate_usd),
                    actual_usd=fmt_usd(entry.amount_usd),
                )
            credits = actual.usage.get("credits")
            if actual.usage.get("credits_reported") and credits != actual.usage.get("credits_for_pages"):
                log_.warning("vendor_credits_differ_from_price_table", usage=dict(actual.usage))
            self._alert(entry.budget_day, entry.service)
        return entry

    def settle_many(self, settled: Sequence[tuple[Reservation, Charge]]) -> None:
        """`settle` for the shares of one call in one statement; a share it could not charge (charged
        before, or taken over by another lease) goes through `settle` alone, which knows what to do."""
        if not settled:
            return
        with autocommit(self.pool) as conn:
            charged = ledger.settle_many(
                conn, [(held, actual.usd, actual.usage) for held, actual in settled], at=self.clock()
            )
        done = {entry.id for entry in charged}
        for entry in charged:
            self._observe(entry)
            if not entry.simulated and entry.amount_usd > entry.estimate_usd:
                log.warning(
                    "cost_overrun",
                    key=entry.key,
                    service=entry.service,
                    stage=entry.stage,
                    estimate_usd=fmt_usd(entry.estimate_usd),
                    actual_usd=fmt_usd(entry.amount_usd),
                )
        for held, actual in settled:
            if held.id not in done:
                self.settle(held, actual)
        for day, service in sorted({(e.budget_day, e.service) for e in charged if not e.simulated}):
            self._alert(day, service)

    @staticmethod
    def _taken_over(conn: psycopg.Connection, reservation: Reservation) -> bool:
        if reservation.holder is None or reservation.simulated:
            return False
        current = ledger.get(conn, reservation.id)
        return current is not None and current.holder != reservation.holder

    def charge_unknown(self, reservation: Reservation, actual: Charge | None, *, reason: str) -> Entry | None:
        """Charge a call that failed after the vendor may have billed it: at its estimate, or at `actual`
        (what its attempts may have cost) when that is more, recorded `unknown` with the reason. The retry
        of the call then reserves and charges under the same key as usual."""
        amount = reservation.estimate_usd if actual is None else max(actual.usd, reservation.estimate_usd)
        usage = dict(actual.usage) if actual is not None else dict(reservation.estimate)
        with autocommit(self.pool) as conn:
            entry = ledger.mark_unknown(
                conn, reservation.id, amount_usd=amount, usage=usage, reason=reason, at=self.clock()
            )
        if entry is None:  # charged by an earlier delivery: the ledger already counts it
            return None
        log.warning(
            "cost_unknown",
            key=reservation.key,
            service=reservation.service,
            stage=reservation.stage,
            charged_usd=fmt_usd(amount),
            reason=reason,
        )
        self._observe(entry)
        self._alert(entry.budget_day, entry.service)
        return entry

    def _charged_lapsed(self, entry: Entry) -> None:
        log.warning(
            "cost_unknown",
            key=entry.key,
            service=entry.service,
            stage=entry.stage,
            charged_usd=fmt_usd(entry.amount_usd),
            reason=ledger.LAPSED_REASON,
            holder=entry.holder,
        )
        self._observe(entry)

    def charge_abandoned(self) -> int:
        """Charge `unknown` what stopped workers reserved and never settled, once their jobs are final
        (ledger.charge_abandoned); how many. The sweep calls it."""
        with autocommit(self.pool) as conn:
            entries = ledger.charge_abandoned(conn, reason=ledger.LAPSED_REASON, at=self.clock())
        for entry in entries:
            self._charged_lapsed(entry)
        return len(entries)

    def release(self, reservation: Reservation) -> None:
        with self.pool.connection() as conn, conn.transaction():
            released = ledger.release(conn, reservation.id, reservation.holder)
        if released:
            log.info("budget_released", key=reservation.key, service=reservation.service)

    def budget_ok(self, service: str) -> bool:
        with self.pool.connection() as conn:
            return budget.budget_left(conn, service, at=self.clock(), tz=self.settings.budget_timezone)

    # --- reports -----------------------------------------------------------------------------------
    def report(self, day: date | None = None, *, owner_id: int | None = None) -> reports.DayReport:
        """The budget day's report: the whole deployment's, or one user's (`owner_id`)."""
        with self.pool.connection() as conn:
            day = day or self.today()
            tz = self.settings.budget_timezone
            return reports.day_report(conn, day, tz=tz, at=self.clock(), owner_id=owner_id)

    def _observe(self, entry: Entry, *, logged: bool = True) -> None:
        labels = {"service": entry.service, "simulated": str(entry.simulated).lower()}
        CHARGED.labels(**labels).inc(float(entry.amount_usd))
        if entry.estimate_usd:
            ratio = float((entry.amount_usd - entry.estimate_usd) / entry.estimate_usd)
            ESTIMATE_DRIFT.labels(stage=entry.stage, **labels).observe(ratio)
        if not logged:
            return
        log.info(
            "cost_charged",
            key=entry.key,
            service=entry.service,
            stage=entry.stage,
            simulated=entry.simulated,
            estimate_usd=fmt_usd(entry.estimate_usd),
            actual_usd=fmt_usd(entry.amount_usd),
        )

    def _alert(self, day: date, service: str, *, refused_by: str | None = None) -> None:
        with self.pool.connection() as conn, conn.transaction():
            fired = alerts.check(conn, day, service, refused_by=refused_by)
        alerts.notify(fired, self.settings.budget_alert_url, self.settings.outbound_allow_networks)
