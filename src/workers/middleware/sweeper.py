"""Puts jobs whose worker stopped, or whose message was lost, back on the queue. The database, not the
broker, says what is owed.

Every worker process runs a `Sweeper` thread (in-process workers too); every `sweep_interval_s` one of
them at a time (a PostgreSQL advisory lock) sweeps:

- **lapsed leases** (ingest.leases): a unit of a job's work (its parse, one embedding batch, an
  in-process message) whose holder stopped renewing it for `lease_s`, or whose holder was a process of
  this host that is gone, is re-sent at once, whatever the stage's time limit: a stage at work keeps its
  lease alive, so it is never doubled. The re-send bumps the lease's generation, which fences the old
  holder should it wake, and gives the message one lease period to be taken before it counts as lost
  again.
- **lost messages** of jobs that hold no lease: `queued` and admitted (its message was sent at
  `enqueued_at`), `running`, or `deferred` and due, that have not moved for `requeue_idle_s` (Redis
  restarted without persistence, a queue purged, a process that exited between committing a job and
  sending its message). The last sign of life is the later of `updated_at`, `enqueued_at` and
  `deferred_until`; re-sending moves `enqueued_at`, so a job waiting behind a long queue is sent again at
  most once per period. The queue stays short because users' backlogs wait in the database
  (workers.admission), so such copies stay few; and they are harmless, since every stage is idempotent.

A job waiting for a batch (stage `batch`) is owed nothing by a message: the sweep sends
`tend_embedding_batches` (workers.batch_route) while inputs wait or a batch is out.

The same sweep re-sends an `ingest reembed` run that stopped moving for `requeue_idle_s`
(workers.reembed), admits held jobs that a crashed top-up left behind, and forgets message delivery counts
older than a day, and charges `unknown` the reservations stopped workers left unsettled once their jobs
are final (costs.ledger.charge_abandoned: their calls may have been billed).
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime

import dramatiq
import psycopg
import structlog
from dramatiq.middleware import Middleware
from prometheus_client import Counter

from ingest.db.rows import scalar
from ingest.leases import LeaseState, dead_owners, pid_alive, to_resend
from ingest.store import leases
from workers import batch_route, messages, reembed
from workers.admission import admit_everyone, send
from workers.middleware.callback_workers import is_callback_worker
from workers.middleware.context import runtime_middleware
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same in every process of this product.
SWEEP_LOCK_KEY = 7_310_425_119

LEASES_LAPSED = Counter("ingest_leases_lapsed", "Job leases found lapsed by a sweep (holder dead or frozen).")
JOBS_RESENT = Counter(
    "ingest_jobs_resent", "Job messages a sweep sent again, by why: lease_lapsed or message_lost.", ["reason"]
)


def _lapsed_leases(conn: psycopg.Connection, lease_s: float) -> list[LeaseState]:
    """Find the lapsed leases and mark them re-sent (in the sweep's transaction); return them."""
    found = leases.sweepable(conn)
    if not found:
        return []
    dead = dead_owners(
        {lease.owner for lease in found if lease.owner}, host=socket.gethostname(), alive=pid_alive
    )
    now: datetime = leases.db_now(conn)
    return leases.mark_resent(conn, to_resend(found, now=now, dead=dead), lease_s)


def requeue_unfinished(rt: Runtime, broker: dramatiq.Broker, *, idle_s: int) -> int:
    """One sweep (see the module's docstring); return how many messages were sent again. Does nothing
    while another process sweeps."""
    with rt.pool.connection() as conn, conn.transaction():
        if not scalar(conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))):
            return 0
        lapsed = _lapsed_leases(conn, rt.settings.lease_s)
        rows = conn.execute(
            "UPDATE jobs SET enqueued_at = now() WHERE id IN ("
            " SELECT id FROM jobs WHERE ((status = 'running' AND stage <> 'batch')"
            "   OR (status = 'queued' AND enqueued_at IS NOT NULL)"
            "   OR (status = 'deferred' AND deferred_until <= now()))"
            " AND greatest(updated_at, enqueued_at, deferred_until) <= now() - make_interval(secs => %s)"
            " AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.job_id = jobs.id)"
            " FOR UPDATE SKIP LOCKED) RETURNING id",
            (idle_s,),
        ).fetchall()
        # A message's deliveries span minutes (retries back off at most a minute), never a day.
        conn.execute("DELETE FROM message_deliveries WHERE last_at < now() - interval '1 day'")
        tend = batch_route.owed(conn)
    for lease in lapsed:
        actor, args = messages.message_for(lease.unit, lease.job_id)
        broker.get_actor(actor).send(*args)
    if lapsed:
        LEASES_LAPSED.inc(len(lapsed))
        JOBS_RESENT.labels(reason="lease_lapsed").inc(len(lapsed))
        log.warning("leases_lapsed", count=len(lapsed), units=sorted({lease.unit for lease in lapsed})[:10])
    lost = [job_id for (job_id,) in rows]
    send(rt, lost)
    if lost:
        JOBS_RESENT.labels(reason="message_lost").inc(len(lost))
        log.warning("jobs_requeued", count=len(lost), idle_s=idle_s)
    admit_everyone(rt)
    rt.router.meter.charge_abandoned()
    if tend:  # the batch route's inputs and batches are followed here, not by a waiting thread
        broker.get_actor(messages.TEND_BATCHES).send()
    return len(lapsed) + len(lost) + reembed.resend_stalled(rt, idle_s=idle_s)


class Sweeper(Middleware):
    """Runs `requeue_unfinished` every `sweep_interval_s` on a daemon thread of each worker process, from
    its boot until it shuts down."""

    def __init__(self, *, interval_s: float, idle_s: int) -> None:
        self.interval_s = interval_s
        self.idle_s = idle_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if is_callback_worker(worker):
            return  # one sweeper a process: the ingestion worker's
        self._stop.clear()
        rt = runtime_middleware(broker).runtime()
        self._thread = threading.Thread(
            target=self._run, args=(rt, broker), name="ingest-sweeper", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self, rt: Runtime, broker: dramatiq.Broker) -> None:
        while not self._stop.is_set():
            try:
                requeue_unfinished(rt, broker, idle_s=self.idle_s)
            except Exception as exc:  # noqa: BLE001  (the database or broker away: the thread must live on)
                log.warning("sweep_failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            self._stop.wait(self.interval_s)
