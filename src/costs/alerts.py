"""Budget alerts: when a day's real charges cross 50%, 80% and 100% of a limit, say so once.

"Once" holds across processes: an alert fires only for the process whose insert of the
(day, service, threshold) row succeeds. Firing means a structlog event `budget_threshold_crossed` and,
when `INGEST_BUDGET_ALERT_URL` is set, a JSON POST through the guarded outbound client (an internal
address needs INGEST_OUTBOUND_ALLOW_NETWORKS) with a short timeout whose failure is logged, never
raised (an alert must not fail the work that triggered it). A refused reservation also fires the 100%
alert of the limit that refused it: the budget is spent for the work waiting, even if a few cents remain.
The gauge `ingest_budget_used_ratio{service}` is the fraction of the day's limit charged so far.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import psycopg
import structlog
from prometheus_client import Gauge

from costs import ledger
from costs.ledger import ALL
from costs.money import ZERO, fmt_usd, total
from ingest import outbound
from ingest.netguard import DestinationRefused, IPNetwork
from ingest.outbound import OutboundFailed

log = structlog.get_logger(__name__)

THRESHOLDS = (50, 80, 100)
WEBHOOK_TIMEOUT_S = 3.0

BUDGET_USED = Gauge("ingest_budget_used_ratio", "Fraction of the day's budget charged.", ["service"])


def crossed(spent: Decimal, limit: Decimal) -> list[int]:
    """The thresholds (percent) that `spent` has reached of `limit`; a zero limit is reached at once."""
    return [t for t in THRESHOLDS if spent * 100 >= limit * t]


def _fire(
    conn: psycopg.Connection, day: date, service: str, threshold: int, spent: Decimal, limit: Decimal
) -> dict[str, object] | None:
    row = conn.execute(
        "INSERT INTO cost_alerts (budget_day, service, threshold, spent_usd, limit_usd)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING threshold",
        (day, service, threshold, spent, limit),
    ).fetchone()
    if row is None:
        return None
    return {
        "event": "budget_threshold_crossed",
        "service": service,
        "threshold_pct": threshold,
        "budget_day": day.isoformat(),
        "spent_usd": fmt_usd(spent),
        "limit_usd": fmt_usd(limit),
    }


def check(conn: psycopg.Connection, day: date, service: str, *, refused_by: str | None = None) -> list[dict]:
    """Record the thresholds newly crossed for `service` and for all services; return their payloads.

    Call in a transaction of its own; `notify` the payloads after it commits.
    """
    spent_by = ledger.charged(conn, day)
    limits = ledger.limits(conn)
    fired = []
    for name, spent in ((service, spent_by.get(service, ZERO)), (ALL, total(list(spent_by.values())))):
        limit = limits.get(name)
        if limit is None:
            continue
        BUDGET_USED.labels(service=name).set(float(spent / limit) if limit else 1.0)
        thresholds = crossed(spent, limit)
        if refused_by == name and 100 not in thresholds:
            thresholds.append(100)
        for threshold in thresholds:
            payload = _fire(conn, day, name, threshold, spent, limit)
            if payload is not None:
                fired.append(payload)
    return fired


def notify(payloads: list[dict], url: str | None, trusted: Sequence[IPNetwork] = ()) -> None:
    """Log each payload and POST it to `url` through the guarded client (`ingest.outbound`): an address
    inside the network is refused unless it is in `trusted` (INGEST_OUTBOUND_ALLOW_NETWORKS)."""
    for payload in payloads:
        fields = {k: v for k, v in payload.items() if k != "event"}
        log.warning("budget_threshold_crossed", **fields)
        if not url:
            continue
        body = json.dumps(payload).encode()
        try:
            answer = outbound.post(
                url,
                content=body,
                headers={"content-type": "application/json"},
                timeout_s=WEBHOOK_TIMEOUT_S,
                trusted=trusted,
            )
        except (DestinationRefused, OutboundFailed) as exc:
            log.warning("budget_alert_webhook_failed", error=str(exc)[:200], **fields)
            continue
        if not 200 <= answer.status_code < 300:
            log.warning("budget_alert_webhook_failed", error=f"answered {answer.status_code}", **fields)
