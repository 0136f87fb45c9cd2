"""Marks a job failed once its message is given up on: retries spent, or an error that retrying cannot fix."""

from __future__ import annotations

from uuid import UUID

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from ingest.db.pool import autocommit
from ingest.store import jobs
from workers import messages
from workers.middleware.context import runtime_middleware
from workers.states import fail_job, one_line

log = structlog.get_logger(__name__)


class JobFailures(Middleware):
    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: object = None,
        exception=None,
    ) -> None:
        if exception is None or not message.failed:
            return
        job_id = message.kwargs.get("job_id") or (message.args[0] if message.args else None)
        if isinstance(job_id, list):
            _hand_on(broker, message, job_id, exception)
            return
        if not isinstance(job_id, str):
            return
        error = one_line(exception)
        if fail_job(runtime_middleware(broker).runtime(), job_id, error):
            log.warning("job_failed", job_id=str(job_id), actor=message.actor_name, error=error)
        else:
            # A batch still at work when another failed the job trips over the deleted chunks: its error
            # is a consequence, not the job's verdict, which stays the first.
            log.info(
                "message_given_up", job_id=str(job_id), actor=message.actor_name, reason="the job is final"
            )


def _hand_on(
    broker: dramatiq.Broker, message: dramatiq.MessageProxy, job_ids: list[str], exception: object
) -> None:
    """A batch given up on: each of its documents not final goes on alone, with its own message and
    retries, and gets its own verdict. A batch hands a document's error on itself; what reaches here
    escaped it (the message's time limit, an error before its documents were taken up), and is no
    document's verdict, so none is failed for it; nor do they wait for the sweep's lost-message pass."""
    rt = runtime_middleware(broker).runtime()
    with autocommit(rt.pool) as conn:
        going_on = jobs.owed_a_message(conn, [UUID(job_id) for job_id in job_ids])
    for job_id in going_on:
        messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))
    log.warning(
        "batch_given_up",
        actor=message.actor_name,
        error=one_line(exception) if isinstance(exception, BaseException) else str(exception),
        handed_on=len(going_on),
    )
