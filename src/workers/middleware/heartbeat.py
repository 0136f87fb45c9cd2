"""The lease heartbeat: a thread in every worker process renews the job leases the process holds."""

from __future__ import annotations

import threading

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from workers.leasing import renew
from workers.middleware.context import runtime_middleware
from workers.runtime import Runtime

log = structlog.get_logger(__name__)


class Heartbeat(Middleware):
    """Renews the process's leases every `lease_heartbeat_s` on a daemon thread, from the worker's boot
    until it shuts down."""

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        rt = runtime_middleware(broker).runtime()
        self._thread = threading.Thread(
            target=self._run, args=(rt,), name="ingest-lease-heartbeat", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None

    def _run(self, rt: Runtime) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                renew(rt)
            except Exception as exc:  # noqa: BLE001  (the database away: the leases lapse; the thread lives on)
                log.warning(
                    "lease_heartbeat_failed",
                    error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                )
