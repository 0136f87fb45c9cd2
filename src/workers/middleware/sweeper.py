"""Puts jobs whose message was lost back on the queue. The database, not the broker, says what is owed.

A message can vanish: Redis restarted without persistence, a queue purged, a process that exited between
committing a job and sending its message. Every worker process runs a `Sweeper` thread; every
`sweep_interval_s` one of them at a time (a PostgreSQL advisory lock) re-sends each job that is owed
progress and has not moved for `requeue_idle_s`:

- `queued` and admitted (its message was sent at `enqueued_at`), or `running`: the last sign of life is
  the later of `updated_at` (every stage and every stored batch touch it) and `enqueued_at`;
- `deferred` and due: the later of those and `deferred_until` (its delayed message should have come).

`requeue_idle_s` exceeds the stage time limit, so a stage still at work is never doubled; and re-sending
moves `enqueued_at`, so a job waiting behind a long queue is sent again at most once per period. The
queue stays short because users' backlogs wait in the database (workers.admission), so such copies stay
few; and they are harmless, since every stage is idempotent. The same sweep admits held jobs that a
crashed top-up left behind, and forgets message delivery counts older than a day.
"""

from __future__ import annotations

import threading

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from ingest.db.rows import scalar
from workers.admission import admit_everyone, send
from workers.middleware.callback_workers import is_callback_worker
from workers.middleware.context import runtime_middleware
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process of this product.
SWEEP_LOCK_KEY = 7_310_425_119


def requeue_unfinished(rt: Runtime, *, idle_s: int) -> int:
    """One sweep (see the module's docstring); return how many jobs were sent again. Does nothing while
    another process sweeps."""
    with rt.pool.connection() as conn, conn.transaction():
        if not scalar(conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))):
            return 0
        rows = conn.execute(
            "UPDATE jobs SET enqueued_at = now() WHERE id IN ("
            " SELECT id FROM jobs WHERE (status = 'running' OR (status = 'queued' AND enqueued_at IS NOT NULL)"
            "   OR (status = 'deferred' AND deferred_until <= now()))"
            " AND greatest(updated_at, enqueued_at, deferred_until) <= now() - make_interval(secs => %s)"
            " FOR UPDATE SKIP LOCKED) RETURNING id",
            (idle_s,),
        ).fetchall()
        # A message's deliveries span minutes (retries back off at most a minute), never a day.
        conn.execute("DELETE FROM message_deliveries WHERE last_at < now() - interval '1 day'")
    lost = [job_id for (job_id,) in rows]
    send(lost)
    if lost:
        log.warning("jobs_requeued", count=len(lost), idle_s=idle_s)
    admit_everyone(rt)
    return len(lost)


class Sweeper(Middleware):
    """Runs `requeue_unfinished` every `sweep_interval_s` on a daemon thread of each worker process."""

    def __init__(self, *, interval_s: float, idle_s: int) -> None:
        self.interval_s = interval_s
        self.idle_s = idle_s
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if is_callback_worker(worker):
            return  # one sweeper a process: the ingestion worker's
        self._stop.clear()
        threading.Thread(target=self._run, args=(broker,), name="ingest-sweeper", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()

    def _run(self, broker: dramatiq.Broker) -> None:
        while not self._stop.is_set():
            try:
                requeue_unfinished(runtime_middleware(broker).runtime(), idle_s=self.idle_s)
            except Exception as exc:  # noqa: BLE001  (the database or broker away: the thread must live on)
                log.warning("sweep_failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            self._stop.wait(self.interval_s)
