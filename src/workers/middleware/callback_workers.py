"""Callbacks get worker threads of their own, so a slow receiver delays no document.

Outbound callbacks wait on other people's servers (up to `callback_timeout_s` an attempt). On the
ingestion threads, eight callbacks to a receiver that took 30 s to answer held every thread and delayed
another user's document from 0.12 s to 14.5 s. So ingestion workers consume the `ingest` queue only.
In-process (`ingest serve`, `ingest add`), when such a worker boots, this middleware starts a second
Dramatiq worker in the same process that consumes the `callbacks` queue only, with
`callback_worker_threads` threads, and stops it with the first. `ingest worker` runs a separate
callbacks process instead (workers.supervisor), and its ingestion processes set the threads to 0.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from workers.messages import CALLBACK_QUEUE

log = structlog.get_logger(__name__)


def is_callback_worker(worker: dramatiq.Worker) -> bool:
    """Whether `worker` is the one that only delivers callbacks (its boot is not the process's boot)."""
    return worker.consumer_whitelist == {CALLBACK_QUEUE}


class _SecondWorkerMiddleware(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "_WorkerMiddleware" not in record.getMessage()


class CallbackWorkers(Middleware):
    def __init__(self, *, threads: int) -> None:
        self.threads = threads
        self._worker: dramatiq.Worker | None = None
        self._lock = threading.Lock()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        consumed = worker.consumer_whitelist
        # A worker of every queue (no whitelist) delivers callbacks itself; the callbacks worker is ours;
        # with no threads, another process delivers them (ingest worker's callbacks process).
        if not consumed or CALLBACK_QUEUE in consumed or self.threads == 0:
            return
        with self._lock:
            if self._worker is not None:
                return
            self._worker = dramatiq.Worker(broker, queues={CALLBACK_QUEUE}, worker_threads=self.threads)
            # Each worker adds its own consumer middleware to the broker, which warns about a second one
            # "of the same type": expected here, as each consumes only its own queues.
            quiet = _SecondWorkerMiddleware()
            broker.logger.addFilter(quiet)
            try:
                self._worker.start()
            finally:
                broker.logger.removeFilter(quiet)
        log.info("callback_workers_started", threads=self.threads)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            if self._worker is None or worker is self._worker:
                return
            callbacks, self._worker = self._worker, None
        # Waits for deliveries in progress (each bounded by callback_timeout_s).
        callbacks.stop()
