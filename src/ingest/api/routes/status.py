"""`GET /v1/status` (admin key): what the console's router and health page draws in one answer: every
dependency's readiness, each service's mode, key, circuit and budget, and the broker's queue depths."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ingest.api.auth import AdminUser
from ingest.api.errors import error_responses
from ingest.api.metrics import queue_depths
from ingest.api.state import runtime
from ingest.services.health import check_all
from workers.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["operations"])


class StatusCheckOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str
    info: dict[str, Any] = Field(
        description="For a service: mode, key_present, circuit (closed, open, half-open), budget_left_usd."
    )


class StatusOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    checks: list[StatusCheckOut]
    queues: dict[str, int] = Field(
        description="Messages waiting per broker queue (in-process and Redis; empty with RabbitMQ)."
    )


@router.get(
    "/status",
    response_model=StatusOut,
    summary="Readiness, modes, circuits and queue depth (admin key)",
    responses=error_responses(401, 403),
)
async def status(user: AdminUser, rt: Annotated[Runtime, Depends(runtime)]) -> StatusOut:
    report = await run_in_threadpool(check_all, rt)
    queues = await run_in_threadpool(queue_depths)
    return StatusOut(
        ok=report.ok,
        checks=[StatusCheckOut(name=c.name, ok=c.ok, detail=c.detail, info=c.info) for c in report.checks],
        queues=queues,
    )
