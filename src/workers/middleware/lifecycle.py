"""What every message of a job goes through in a worker, whichever stage it runs.

- Its log lines carry `job_id`, `document_id`, `user` and `stage` (bound for the whole message: the
  stage's own lines, Dramatiq's retry warnings and the failure middleware's verdict alike).
- Its deliveries are counted. Dramatiq's retries are bounded, but a message whose worker dies with it
  (SIGKILL, out of memory, a parser that crashes the process) comes back without counting as a retry,
  and would come back forever. Past `job_max_retries + 1` deliveries the job is failed and the message
  goes to the dead letters, as if its retries were spent.
- Once it is done, its user's admitted jobs are topped up (workers.admission): a job that completed,
  failed or was deferred frees a slot for the user's next held job.

The middleware comes first in the broker's list: `after_*` hooks run in reverse order, so the log context
lasts through the other middleware's hooks and the top-up sees the verdict of JobFailures.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import dramatiq
import psycopg
import structlog
from dramatiq.middleware import Middleware, SkipMessage
from psycopg_pool import PoolTimeout

from ingest.config import Settings
from ingest.db.pool import autocommit
from ingest.db.rows import one
from ingest.logs import configure_logging
from workers import messages
from workers.admission import admit
from workers.middleware.callback_workers import is_callback_worker
from workers.middleware.context import runtime_middleware
from workers.runtime import Runtime
from workers.states import fail_job

log = structlog.get_logger(__name__)

# The actors that move a job, and the stage each one's lines are labelled with.
JOB_STAGES = {"parse_document": "parse", "embed_chunks": "embed", "ingest_batch": "batch"}
# A batch whose worker died under it this many times is split: each document goes on with its own message
# (and its own delivery count), so a document that kills its worker fails alone.
BATCH_MAX_DELIVERIES = 2
CONTEXT_KEYS = ("job_id", "document_id", "user", "stage")
# A lookup must not hold a message while the database is away: the stage itself will find out.
LOOKUP_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Delivery:
    deliveries: int
    document_id: str | None
    user: str | None
    owner_id: int | None


def record_delivery(rt: Runtime, message_id: str, job_id: str) -> Delivery:
    """Count one delivery of the message and read who its job belongs to (one round trip: a single
    statement, committed on its own, so no BEGIN and COMMIT around it)."""
    with autocommit(rt.pool, timeout=LOOKUP_TIMEOUT_S) as conn:
        row = one(
            conn.execute(
                "WITH counted AS ("
                " INSERT INTO message_deliveries (message_id, deliveries) VALUES (%(message)s, 1)"
                " ON CONFLICT (message_id) DO UPDATE"
                "  SET deliveries = message_deliveries.deliveries + 1, last_at = now()"
                " RETURNING deliveries)"
                " SELECT counted.deliveries, d.id::text, u.name, d.owner_id FROM counted"
                " LEFT JOIN jobs j ON j.id = %(job)s::uuid"
                " LEFT JOIN documents d ON d.id = j.document_id"
                " LEFT JOIN users u ON u.id = d.owner_id",
                {"message": message_id, "job": job_id},
            )
        )
    return Delivery(*row)


class JobLifecycle(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_deliveries = settings.job_max_retries + 1
        # Owner of each message in progress, for the top-up after it (worker threads share the middleware).
        self._owners: dict[str, int] = {}
        self._lock = threading.Lock()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only `ingest worker` processes boot this way; the CLI and the API configure their own logging.
        configure_logging(self.settings, interactive=False, stdlib=True)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if is_callback_worker(worker):
            return  # the process's second worker, started by the first (it logs callback_workers_started)
        log.info("worker_ready", broker=type(broker).__name__, url=self.settings.broker_url)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        stage = JOB_STAGES.get(message.actor_name)
        if stage is None or not message.args or not message.args[0]:
            return
        first = message.args[0]
        batch = [str(job) for job in first] if isinstance(first, list) else None
        job_id = batch[0] if batch else str(first)  # a batch's documents are one user's (admission)
        structlog.contextvars.bind_contextvars(job_id=job_id, stage=stage)
        rt = runtime_middleware(broker).runtime()
        try:
            delivery = record_delivery(rt, message.message_id, job_id)
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("delivery_not_recorded", error=" ".join(str(exc).split())[:200])
            return
        structlog.contextvars.bind_contextvars(document_id=delivery.document_id, user=delivery.user)
        if delivery.owner_id is not None:
            with self._lock:
                self._owners[message.message_id] = delivery.owner_id
        if batch is not None:
            if delivery.deliveries > BATCH_MAX_DELIVERIES:
                log.warning("batch_split", documents=len(batch), deliveries=delivery.deliveries)
                for job in batch:
                    messages.actor(messages.PARSE_DOCUMENT).send(job)
                raise SkipMessage()
            return
        if delivery.deliveries > self.max_deliveries:
            error = (
                f"gave up after {delivery.deliveries - 1} deliveries of one message: the worker running it"
                " stopped each time (killed, or out of memory)"
            )
            fail_job(rt, job_id, error)
            log.error("job_failed", error=error)
            message.fail()  # not run; dead-lettered

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.actor_name not in JOB_STAGES:
            return
        with self._lock:
            owner_id = self._owners.pop(message.message_id, None)
        try:
            if owner_id is not None:
                admit(runtime_middleware(broker).runtime(), owner_id)
        except Exception as exc:  # noqa: BLE001  (database or broker away: the sweeper admits later)
            log.warning("admission_failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
        finally:
            structlog.contextvars.unbind_contextvars(*CONTEXT_KEYS)

    after_skip_message = after_process_message
