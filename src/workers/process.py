"""What a process builds at start to run or send jobs: the broker, with every actor declared on it.

Nothing builds a broker at import. Dramatiq's worker processes start here (`ingest worker` runs
`python -m workers workers.process:start_worker_process`), the CLI and the API call `start_broker` as they
open their runtime, and the metrics process of `ingest worker` starts its own in `serve_metrics`.
"""

from __future__ import annotations

import os
import threading

import dramatiq
import structlog
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from ingest.config import Settings
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.middleware.metrics import QueueCollector

log = structlog.get_logger(__name__)


def start_broker(settings: Settings) -> dramatiq.Broker:
    """Build the broker `settings` name, declare the actors on it and make it this process's broker."""
    broker = build_broker(settings)
    declare_actors(broker)
    dramatiq.set_broker(broker)
    return broker


def start_worker_process() -> None:
    """Dramatiq's CLI calls this in each worker process, then takes the broker it set."""
    start_broker(Settings())


def serve_metrics() -> int:
    """A Dramatiq fork: serve the sum of every worker process's metrics, and the queues, until stopped."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        log.error("worker_metrics_not_served", reason="start the workers with `ingest worker`")
        return 1
    settings = Settings()
    # Every actor declared, so the broker knows every queue.
    broker = start_broker(settings)
    port = settings.worker_metrics_port
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(QueueCollector(broker))
    start_http_server(port or 0, registry=registry)
    log.info("worker_metrics_served", port=port)
    threading.Event().wait()  # the fork ends when Dramatiq stops it (SIGTERM)
    return 0
