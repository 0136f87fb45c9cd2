"""Outbound callbacks: when a document completes or fails and was uploaded with a `callback_url`, that URL
gets one POST signed per the Standard Webhooks spec (`workers.callback_signing`), retried with backoff.

`announce` queues the delivery from inside the transaction that makes the job final. The delivery then
reads the job `FOR SHARE`, which waits for that transaction to end: it sees the committed outcome, and a
completion that rolled back (to be retried by its stage) announces nothing.

Every attempt is recorded in `callback_attempts`. A 2xx answer delivers; 410 Gone stops (the receiver
wants no more); anything else (another status, a timeout, a refused connection) is retried after
`callback_backoff_s` × 2^(attempt-1) × a jitter of 1-2, at most 6 hours, until `callback_max_attempts`.
Every POST goes through `ingest.outbound`: a URL that resolves inside the network (unless trusted by
INGEST_OUTBOUND_ALLOW_NETWORKS) is never contacted, and the attempt says so without saying more.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal
from uuid import UUID

import dramatiq
import psycopg
import structlog
from pydantic import BaseModel, ConfigDict

import ingest
from costs.money import fmt_usd
from costs.report import by_documents
from ingest import outbound
from ingest.config import Settings
from ingest.destinations import Unresolvable
from ingest.netguard import DestinationRefused
from ingest.outbound import OutboundFailed
from ingest.store import chunks, documents, webhooks
from workers import messages
from workers.callback_signing import (
    CallbackData,
    CallbackEvent,
    EventType,
    delivery_headers,
    new_message_id,
    secret_key,
)
from workers.middleware.context import current_runtime
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# A queue and threads of their own (workers.middleware.callback_workers): no slow receiver delays a
# document.
MAX_BACKOFF_S = 6 * 3600
# Dramatiq's own retries are only a backstop for failures before an attempt is recorded (the database
# down); recorded attempts are bounded by callback_max_attempts, which is at most 30.
BACKSTOP_RETRIES = 40
USER_AGENT = f"ingest-callbacks/{ingest.__version__}"

Outcome = Literal["completed", "failed"]


class PendingCallback(BaseModel):
    """What the queue carries: identities only. The body is built from the database at each attempt."""

    model_config = ConfigDict(frozen=True)

    webhook_id: str
    type: EventType
    document_id: UUID
    job_id: UUID

    @property
    def outcome(self) -> Outcome:
        return "completed" if self.type == "document.completed" else "failed"


def announce(conn: psycopg.Connection, job_id: UUID, document_id: UUID, outcome: Outcome) -> None:
    """Queue the document's callback, if it has a callback_url. Call inside the transaction that made the
    job `outcome`, holding the job's row lock."""
    row = conn.execute("SELECT callback_url FROM documents WHERE id = %s", (document_id,)).fetchone()
    if row is None or not row[0]:
        return
    pending = PendingCallback(
        webhook_id=new_message_id(),
        type="document.completed" if outcome == "completed" else "document.failed",
        document_id=document_id,
        job_id=job_id,
    )
    # Keyword-only: the JobFailures middleware reads a failed message's first argument (or `job_id`) as
    # the job to fail, and a callback that is given up must never fail its document's job.
    deliver = messages.actor(messages.DELIVER_CALLBACK)
    deliver.send_with_options(kwargs={"callback": pending.model_dump(mode="json")})


def announce_many(conn: psycopg.Connection, done: Sequence[tuple[UUID, UUID]], outcome: Outcome) -> None:
    """`announce` for many (job, document) pairs made `outcome` in this transaction: one look-up."""
    urls = documents.callback_urls(conn, [document_id for _, document_id in done])
    deliver = messages.actor(messages.DELIVER_CALLBACK)
    for job_id, document_id in done:
        if document_id not in urls:
            continue
        pending = PendingCallback(
            webhook_id=new_message_id(),
            type="document.completed" if outcome == "completed" else "document.failed",
            document_id=document_id,
            job_id=job_id,
        )
        deliver.send_with_options(kwargs={"callback": pending.model_dump(mode="json")})


def deliver_callback(callback: dict[str, str]) -> None:
    rt = current_runtime()
    pending = PendingCallback.model_validate(callback)
    structlog.contextvars.bind_contextvars(
        document_id=str(pending.document_id), webhook_id=pending.webhook_id
    )
    try:
        retry_in_s = _deliver_once(rt, pending)
    finally:
        structlog.contextvars.unbind_contextvars("document_id", "webhook_id")
    if retry_in_s is not None:
        # Retry, not an exception: the failure is recorded and logged already, and Dramatiq logs no error.
        raise dramatiq.Retry("callback not delivered", delay=max(1, round(retry_in_s * 1000)))


def _deliver_once(rt: Runtime, pending: PendingCallback) -> float | None:
    """Make one delivery attempt; return the seconds to wait before the next, or None when done."""
    settings = rt.settings
    prepared = _prepare(rt, pending)
    if prepared is None:
        return None
    url, event, made = prepared
    if made >= settings.callback_max_attempts:
        # A redelivered message (a worker died mid-attempt) must not add attempts beyond the bound.
        log.warning("callback_dropped", reason=f"{made} attempts made already")
        return None
    secret = settings.callback_signing_secret.get_secret_value() if settings.callback_signing_secret else ""
    unsigned = _unsigned(secret)
    status_code, error, refused = None, unsigned, False
    if unsigned is None:
        status_code, error, refused = _post(url, event, pending.webhook_id, secret, settings)
    with rt.pool.connection() as conn:
        number = webhooks.record_attempt(
            conn,
            document_id=pending.document_id,
            webhook_id=pending.webhook_id,
            event_type=pending.type,
            status_code=status_code,
            error=error,
        )
    if error is None:
        log.info("callback_delivered", attempt=number, status=status_code)
        return None
    # No retry fixes the secret: the workers read settings once, at start.
    final = unsigned is not None or refused or status_code == 410 or number >= settings.callback_max_attempts
    log.warning("callback_failed", attempt=number, status=status_code, error=error, given_up=final)
    if final:
        return None
    return min(settings.callback_backoff_s * 2 ** (number - 1) * random.uniform(1, 2), MAX_BACKOFF_S)


def _unsigned(secret: str) -> str | None:
    """Why nothing can be signed with this secret; None when it is a usable one."""
    if not secret:
        return "not sent: INGEST_CALLBACK_SIGNING_SECRET is not set, and callbacks are always signed"
    try:
        secret_key(secret)
    except ValueError as exc:
        return f"not sent: INGEST_CALLBACK_SIGNING_SECRET is not usable: {exc}"
    return None


def _prepare(rt: Runtime, pending: PendingCallback) -> tuple[str, CallbackEvent, int] | None:
    """The URL, the event and the attempts made so far; None when there is nothing (more) to announce."""
    with rt.pool.connection() as conn, conn.transaction():
        # Waits for the transaction that finished the job (it holds the row lock) to commit or roll back.
        row = conn.execute(
            "SELECT status, error, finished_at FROM jobs WHERE id = %s FOR SHARE", (pending.job_id,)
        ).fetchone()
        doc = documents.get(conn, pending.document_id)
        if row is None or doc is None or not doc.callback_url:
            log.info("callback_dropped", reason="the document or its job is gone")
            return None
        status, error, finished_at = row
        if status != pending.outcome:
            # Rolled back, or retried since (`ingest retry`): the job's next ending announces itself.
            log.info("callback_dropped", reason=f"the job is {status} now, not {pending.outcome}")
            return None
        cost = by_documents(conn, [doc.id], at=rt.router.meter.clock())[doc.id]
        event = CallbackEvent(
            type=pending.type,
            timestamp=finished_at,
            data=CallbackData(
                document_id=doc.id,
                job_id=pending.job_id,
                status=pending.outcome,
                error=error if pending.outcome == "failed" else None,
                chunks=chunks.count(conn, doc.id),
                cost_usd=fmt_usd(cost.spent),
            ),
        )
        return doc.callback_url, event, webhooks.attempts_made(conn, pending.webhook_id)


def _post(
    url: str,
    event: CallbackEvent,
    webhook_id: str,
    secret: str,
    settings: Settings,
) -> tuple[int | None, str | None, bool]:
    """POST the event once: (status code or None, why not or None when delivered, whether retrying is
    pointless). A destination refused now (DNS moved it inside since the upload) is never contacted."""
    body = event.body()
    headers = {**delivery_headers(secret, webhook_id, body), "user-agent": USER_AGENT}
    try:
        # No redirects: the spec counts a 3xx as a failure (the receiver should update its URL).
        answer = outbound.post(
            url,
            content=body,
            headers=headers,
            timeout_s=settings.callback_timeout_s,
            trusted=settings.outbound_allow_networks,
        )
    except Unresolvable as exc:
        return None, f"not sent: {exc}", False
    except DestinationRefused as exc:
        return None, f"not sent: {exc}", True
    except OutboundFailed as exc:
        return None, str(exc), False
    if 200 <= answer.status_code < 300:
        return answer.status_code, None, False
    return answer.status_code, f"the receiver answered {answer.status_code}", False
