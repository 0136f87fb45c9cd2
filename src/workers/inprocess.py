"""Runs the actors inside the current process when no broker is configured (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker

from ingest import tokens
from workers import leasing
from workers.indexing import build_drained
from workers.messages import INGEST_QUEUE
from workers.middleware.context import runtime_middleware
from workers.process import start_broker
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


@contextmanager
def serving(runtime: Runtime, *, threads: int) -> Iterator[bool]:
    """Start this process's broker (from `runtime.settings`) and attach `runtime` to it; with the in-process
    broker also run worker threads. Yields whether this process executes jobs itself."""
    broker = start_broker(runtime.settings)
    runtime_middleware(broker).attach(runtime)
    if not isinstance(broker, StubBroker):
        yield False
        return
    tokens.encoding()  # the vocabulary loads once, before the first job waits for it
    # The worker's boot starts the lease heartbeat and the sweeper (workers.middleware): the
    # first sweep re-sends at once what an earlier process on this database left (its leases name a
    # process that is gone), and later sweeps what a process dying meanwhile leaves.
    # The ingestion queue only: callbacks get their own threads (workers.middleware.callback_workers).
    worker = dramatiq.Worker(broker, queues={INGEST_QUEUE}, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield True
    finally:
        _build_drained_indexes(runtime)
        worker.stop()
        leasing.abandon(runtime)  # messages still in this process's memory: a sweep anywhere re-sends them
        runtime_middleware(broker).attach(None)


def _build_drained_indexes(runtime: Runtime) -> None:
    """Bulk loads this process deferred get their index before its workers (and queued builds) stop."""
    try:
        build_drained(runtime)
    except Exception as exc:  # noqa: BLE001  (the database away: the next process builds it)
        log.warning("index_build_at_exit_failed", error=" ".join(str(exc).split())[:200])
