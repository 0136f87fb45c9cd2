"""`ingest retry`: run a failed job again, in this process's workers when no broker is set (the Runtime)."""

from __future__ import annotations

import time
from typing import Annotated
from uuid import UUID

import typer

from ingest.cli.common import err, fail, handle_errors, out
from ingest.cli.inspect import job_or_document_id
from ingest.cli.runtime import runtime
from ingest.services.submit import retry_job
from ingest.store import jobs
from workers.runtime import Runtime

RETRY_POLL_S = 0.2


@handle_errors
def retry(
    job_id: Annotated[str, typer.Argument(help="The failed job to run again.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Return when the job is completed, failed or deferred.")
    ] = True,
) -> None:
    """Run a failed job again; exit 0 when it completes (or, with --no-wait, once it is queued)."""
    with runtime(workers=True) as rt:
        with rt.pool.connection() as conn:
            wanted = job_or_document_id(conn, job_id)
        job = retry_job(rt, wanted)
        if not wait:
            out.print(f"job {job.id} queued again")
            return
        with err.status(f"job {job.id}: running again"):
            final = _wait_final(rt, job.id)
    if final is None:
        raise fail(f"job {job.id}: its document was deleted while it ran")
    detail = f": {final.error}" if final.error else ""
    if final.status != "completed":
        raise fail(f"job {final.id} {final.status}{detail}")
    out.print(f"job {final.id} completed")


def _wait_final(rt: Runtime, job_id: UUID) -> jobs.Job | None:
    while True:
        with rt.pool.connection() as conn:
            job = jobs.get(conn, job_id)
        if job is None or job.status in jobs.SETTLED:
            return job
        time.sleep(RETRY_POLL_S)
