"""Prometheus metrics: request latency and counts by route template, jobs by status, broker queue depth.

Each app has its own registry (tests build many apps in one process). Job counts are read from the
database at scrape time, so every API process reports the same, true numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import dramatiq
import psycopg
import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.store import jobs
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

JOB_STATUSES = ("queued", "running", "completed", "failed", "deferred")


class _PipelineCollector(Collector):
    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime()
        if rt is None:
            return
        depth = _queue_depths()
        if depth:
            queued = GaugeMetricFamily(
                "ingest_queue_messages", "Messages waiting in the broker.", labels=["queue"]
            )
            for queue, n in sorted(depth.items()):
                queued.add_metric([queue], n)
            yield queued
        by_status = GaugeMetricFamily("ingest_jobs", "Jobs by status.", labels=["status"])
        try:
            with rt.pool.connection(timeout=5) as conn:
                counts = jobs.count_by_status(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            # /health/ready reports the database; the request metrics should still be scraped meanwhile.
            log.warning("metrics_jobs_unavailable", error=" ".join(str(exc).split())[:200])
            return
        for status in JOB_STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status


def _queue_depths() -> dict[str, int]:
    """Waiting messages per queue where that is one cheap call: in-process and Redis (RabbitMQ is left out:
    asking it means declaring the queues on a new channel)."""
    broker = dramatiq.get_broker()
    if isinstance(broker, StubBroker):
        return {name: queue.qsize() for name, queue in broker.queues.items()}
    if isinstance(broker, RedisBroker):
        try:
            return {
                name: int(broker.client.llen(f"{broker.namespace}:{name}"))
                for name in broker.get_declared_queues()
            }
        except redis.RedisError as exc:
            log.warning("metrics_queue_unavailable", error=" ".join(str(exc).split())[:200])
    return {}


class Metrics:
    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "ingest_http_request_duration_seconds",
            "Request latency by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.requests = Counter(
            "ingest_http_requests",
            "Requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(_PipelineCollector(runtime))
        # Endpoint → path template of routes that do not put themselves in the scope (FastAPI's /docs and
        # /openapi.json are plain Starlette routes); filled in once the app has its routes.
        self.templates: dict[object, str] = {}

    def route_of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(route.path)
        return self.templates.get(scope.get("endpoint"), "unmatched")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()


class MetricsMiddleware:
    """Times every HTTP request and labels it with its route template (`/v1/jobs/{job_id}`), never the
    raw path, so ids and probes of unknown paths cannot blow up the number of series."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting a response

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            # The router writes the matched route into the scope it was given, which is this one.
            route = self.metrics.route_of(scope)
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route, status, seconds)
            log.info(
                "request", method=scope["method"], route=route, status=status, ms=round(seconds * 1000, 1)
            )
