"""`/v1/jobs/{id}`: a job's state, and the same as server-sent events while it moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated
from uuid import UUID

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ingest.api.auth import CurrentUser
from ingest.api.errors import error_responses
from ingest.api.models import ErrorDetail, ErrorOut, JobOut
from ingest.api.routes.costs import job_cost
from ingest.api.state import runtime
from ingest.errors import NotFound
from ingest.services import submit
from ingest.store import embedding_batches, jobs, leases
from workers.runtime import Runtime

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]


def _job(rt: Runtime, job_id: UUID, owner_id: int) -> JobOut | None:
    with rt.pool.connection() as conn:
        job = jobs.get(conn, job_id, owner_id=owner_id)
        if job is None:
            return None
        route = embedding_batches.route_of(conn, job.id)
        return JobOut.of(
            job,
            cost=job_cost(rt, conn, job.id),
            leases=leases.of_job(conn, job.id),
            route=route.route if route else "sync",
            waiting=embedding_batches.waiting(conn, [job.id]).get(job.id),
        )


@router.get(
    "/{job_id}", response_model=JobOut, summary="A job's state", responses=error_responses(400, 401, 404)
)
def get_job(job_id: UUID, user: CurrentUser, rt: RuntimeDep) -> JobOut:
    job = _job(rt, job_id, user.id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.post(
    "/{job_id}/retry",
    response_model=JobOut,
    status_code=202,
    summary="Run a failed job again",
    description="Queues a `failed` job again (its document's chunks were removed when it failed); 409 when "
    "the job has not failed.",
    responses=error_responses(400, 401, 404, 409),
)
def retry_job(job_id: UUID, user: CurrentUser, rt: RuntimeDep) -> JobOut:
    submit.retry_job(rt, job_id, owner_id=user.id)
    job = _job(rt, job_id, user.id)
    if job is None:  # deleted between the two
        raise NotFound(f"no job {job_id}")
    return job


def _event(name: str, seq: int, data: str) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {data}\n\n"


async def job_events(rt: Runtime, first: JobOut, owner_id: int) -> AsyncIterator[str]:
    """One `job` event per change of status, stage, progress or cost; the stream ends after the event
    with a final status (completed, failed). A deferred job keeps its stream open until it moves again."""
    poll_s = rt.settings.api_events_poll_s
    keepalive_s = rt.settings.api_events_keepalive_s
    job: JobOut | None = first
    last_key: tuple[object, ...] | None = None
    seq = 0
    quiet_s = 0.0
    while True:
        if job is None:
            gone = ErrorOut(error=ErrorDetail(code="not_found", message="the job's document was deleted"))
            yield _event("error", seq + 1, gone.model_dump_json())
            return
        key = (job.status, job.stage, job.progress, job.cost_usd, job.simulated_cost_usd)
        if key != last_key:
            seq += 1
            last_key, quiet_s = key, 0.0
            yield _event("job", seq, job.model_dump_json())
            if job.status in jobs.FINAL:
                return
        elif quiet_s >= keepalive_s:
            quiet_s = 0.0
            yield ": keep-alive\n\n"
        await anyio.sleep(poll_s)
        quiet_s += poll_s
        job = await run_in_threadpool(_job, rt, first.id, owner_id)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    summary="Follow a job as server-sent events",
    description=(
        "`text/event-stream`: a `job` event (data: the job as in GET /v1/jobs/{id}) now and at every change "
        "of status, stage, progress or cost; the stream ends after the event whose status is `completed` or "
        "`failed`. An `error` event ends it if the document is deleted meanwhile."
    ),
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "The event stream",
        },
        **error_responses(400, 401, 404),
    },
)
def follow_job(job_id: UUID, user: CurrentUser, rt: RuntimeDep) -> StreamingResponse:
    first = _job(rt, job_id, user.id)
    if first is None:
        raise NotFound(f"no job {job_id}")
    return StreamingResponse(
        job_events(rt, first, user.id),
        media_type="text/event-stream",
        # Proxies (nginx) would otherwise buffer the stream and deliver the events all at the end.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
