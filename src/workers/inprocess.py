"""Runs the actors inside the current process when no broker is configured (the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
from dramatiq.brokers.stub import StubBroker

from ingest.runtime import Runtime
from workers.context import runtime_middleware


def uses_in_process_broker() -> bool:
    import workers.actors  # noqa: F401  (declares the actors on the broker)

    return isinstance(dramatiq.get_broker(), StubBroker)


@contextmanager
def serving(runtime: Runtime, *, threads: int) -> Iterator[bool]:
    """Attach `runtime` to the broker; with the in-process broker also run worker threads. Yields whether
    this process executes jobs itself."""
    local = uses_in_process_broker()
    broker = dramatiq.get_broker()
    runtime_middleware(broker).attach(runtime)
    if not local:
        yield False
        return
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        from workers.sweeper import requeue_unfinished

        # Jobs left by an earlier process that stopped before finishing them; a job another live process
        # is moving has been touched more recently than this.
        requeue_unfinished(runtime, idle_s=30)
        yield True
    finally:
        worker.stop()
        runtime_middleware(broker).attach(None)
