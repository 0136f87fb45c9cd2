"""Scrape-time gauges of the router's shared state, read at each scrape like the job counts: today's
spend, reservations and limit per service (the ledger's exact figures, as floats for Prometheus), and
each service's circuit state. Every API process reports the same numbers: use `max`, not `sum`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.circuit import State
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


class RouterCollector(Collector):
    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime()
        if rt is None:
            return
        yield from _budget(rt)
        yield from _circuits(rt)


def _budget(rt: Runtime) -> Iterator[Metric]:
    try:
        report = rt.router.meter.report()
    except Exception as exc:  # noqa: BLE001  (a scrape reports what it can; /health/ready says why)
        log.warning("metrics_budget_unavailable", error=" ".join(str(exc).split())[:200])
        return
    spent = GaugeMetricFamily("ingest_budget_spent_usd", "Real dollars charged today.", labels=["service"])
    reserved = GaugeMetricFamily(
        "ingest_budget_reserved_usd", "Dollars held today for calls in flight.", labels=["service"]
    )
    limit = GaugeMetricFamily(
        "ingest_budget_limit_usd", "Today's daily limit (absent: no limit).", labels=["service"]
    )
    shadow = GaugeMetricFamily(
        "ingest_budget_simulated_usd", "Shadow cost of today's mock calls.", labels=["service"]
    )
    for name, amounts in [*report.services.items(), ("all", report.total)]:
        spent.add_metric([name], float(amounts.spent))
        reserved.add_metric([name], float(amounts.reserved))
        shadow.add_metric([name], float(amounts.simulated))
        if amounts.limit is not None:
            limit.add_metric([name], float(amounts.limit))
    yield from (spent, reserved, limit, shadow)


def _circuits(rt: Runtime) -> Iterator[Metric]:
    circuit = GaugeMetricFamily(
        "ingest_circuit_state", "1 for each service's current circuit state.", labels=["service", "state"]
    )
    try:
        states = {service: rt.router.circuits.state(service) for service in rt.router.modes.all()}
    except Exception as exc:  # noqa: BLE001  (the circuits' store, Redis, may be down)
        log.warning("metrics_circuits_unavailable", error=" ".join(str(exc).split())[:200])
        return
    for service, now in sorted(states.items()):
        for state in State:
            circuit.add_metric([service, state.value], 1.0 if state is now else 0.0)
    yield circuit
