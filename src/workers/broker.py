"""The Dramatiq broker: Redis or RabbitMQ when configured, else an in-process broker (embedded default).

`build_broker` only builds it; a process starts it, with its actors, in workers.process.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from ingest.config import Settings
from ingest.errors import ServiceUnavailable, UnreadableDocument, UnsupportedType, VendorError
from workers.middleware.callback_workers import CallbackWorkers
from workers.middleware.context import RuntimeMiddleware
from workers.middleware.failures import JobFailures
from workers.middleware.heartbeat import Heartbeat
from workers.middleware.lifecycle import JobLifecycle
from workers.middleware.metrics import WorkerMetrics
from workers.middleware.preload import Preload
from workers.middleware.sweeper import Sweeper

# Errors that no retry can fix: the job fails at once with the error's message.
PERMANENT_ERRORS = (UnreadableDocument, UnsupportedType, VendorError, ServiceUnavailable)


def build_broker(settings: Settings) -> dramatiq.Broker:
    middleware = [
        # First, so its `after_*` hooks run last: the job's log context lasts through the others' hooks,
        # and its top-up of the user's admitted jobs sees the verdict of JobFailures.
        JobLifecycle(settings),
        WorkerMetrics(),
        AgeLimit(),
        TimeLimit(time_limit=settings.job_time_limit_s * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # `after_*` hooks run in reverse order: JobFailures must come before Retries to see its verdict.
        JobFailures(),
        # Dramatiq's default is 20 retries over about a week; a document should fail visibly sooner.
        Retries(max_retries=settings.job_max_retries, min_backoff=1_000, max_backoff=60_000),
        # Before RuntimeMiddleware: at shutdown these threads stop before it closes the Runtime they use.
        Heartbeat(interval_s=settings.lease_heartbeat_s),
        Sweeper(interval_s=settings.sweep_interval_s, idle_s=settings.requeue_after_s),
        # Before RuntimeMiddleware: the callbacks worker stops before the runtime it uses is closed.
        CallbackWorkers(threads=settings.callback_worker_threads),
        RuntimeMiddleware(),
        Preload(settings),
    ]
    if settings.redis_url:
        from dramatiq.brokers.redis import RedisBroker

        # A dead worker's unacknowledged messages return once it has been silent for the heartbeat
        # timeout, at the next maintenance pass (a `maintenance_chance` in a million broker commands).
        return RedisBroker(
            url=settings.redis_url,
            namespace=settings.broker_namespace,
            middleware=middleware,
            heartbeat_timeout=settings.broker_heartbeat_timeout_s * 1000,
            maintenance_chance=settings.broker_maintenance_chance,
            dead_message_ttl=settings.broker_dead_message_ttl_s * 1000,
        )
    if settings.rabbitmq_url:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=settings.rabbitmq_url, middleware=middleware)
    return StubBroker(middleware=middleware)
