"""Marks a job failed once its message is given up on: retries spent, or an error that retrying cannot fix."""

from __future__ import annotations

import dramatiq
import structlog
from dramatiq.middleware import Middleware

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
        if not isinstance(job_id, str):  # none, or a batch's list (workers.batch hands its failures on)
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
