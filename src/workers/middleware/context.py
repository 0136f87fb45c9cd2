"""Gives actors the process's Runtime without a global: it lives on a middleware of the broker."""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.middleware import Middleware

from workers.runtime import Runtime


class RuntimeMiddleware(Middleware):
    """Holds the Runtime actors use: the one the CLI or API attached, or one opened on first use."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._owned = False
        self._lock = threading.Lock()

    def attach(self, runtime: Runtime | None) -> None:
        self._runtime = runtime
        self._owned = False

    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                self._runtime = Runtime.open()
                self._owned = True
            return self._runtime

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        with self._lock:
            if self._owned and self._runtime is not None:
                self._runtime.close()
                self._runtime = None


def runtime_middleware(broker: dramatiq.Broker | None = None) -> RuntimeMiddleware:
    broker = broker or dramatiq.get_broker()
    for middleware in broker.middleware:
        if isinstance(middleware, RuntimeMiddleware):
            return middleware
    raise RuntimeError("the broker has no RuntimeMiddleware; build it with workers.broker.build_broker")


def current_runtime() -> Runtime:
    return runtime_middleware().runtime()
