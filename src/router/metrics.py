"""The router's Prometheus metrics (process-wide registry: `GET /metrics` serves it)."""

from __future__ import annotations

from prometheus_client import Counter

ROUTE_DECISIONS = Counter(
    "ingest_route_decisions_total",
    "Routing decisions, by service and choice (real, mock, defer, fail).",
    ["service", "choice"],
)
CHUNKS_UPGRADED = Counter(
    "ingest_chunks_upgraded_total",
    "Chunks re-embedded by the real service after the mock stood in for it (hybrid mode).",
)
VENDOR_ERRORS = Counter(
    "ingest_vendor_errors_total",
    "Failed vendor calls (every attempt, retried or not), by service and kind (rate_limited, transient, …).",
    ["service", "kind"],
)
