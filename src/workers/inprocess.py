"""Runs the actors inside the current process when no broker is configured (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import structlog
from dramatiq.brokers.stub import StubBroker

from ingest import tokens
from workers.indexing import build_drained
from workers.middleware.callback_workers import INGEST_QUEUE
from workers.middleware.context import runtime_middleware
from workers.middleware.sweeper import requeue_unfinished
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
    # The ingestion queue only: callbacks get their own threads (workers.middleware.callback_workers).
    worker = dramatiq.Worker(broker, queues={INGEST_QUEUE}, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        # Jobs left by an earlier process that stopped before finishing them; a job another live process
        # is moving has been touched more recently than this.
        requeue_unfinished(runtime, idle_s=30)
        yield True
    finally:
        _build_drained_indexes(runtime)
        worker.stop()
        runtime_middleware(broker).attach(None)


def _build_drained_indexes(runtime: Runtime) -> None:
    """Bulk loads this process deferred get their index before its workers (and queued builds) stop."""
    try:
        build_drained(runtime)
    except Exception as exc:  # noqa: BLE001  (the database away: the next process builds it)
        log.warning("index_build_at_exit_failed", error=" ".join(str(exc).split())[:200])
