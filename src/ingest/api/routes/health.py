"""`/health/live`, `/health/ready` and `/metrics`: for orchestrators and scrapers, so no key is asked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ingest.api.models import CheckOut, LiveOut, ReadyOut
from ingest.api.state import ApiState, api_state, runtime
from ingest.services.health import check_all
from workers.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=LiveOut, summary="The process answers")
def live() -> LiveOut:
    return LiveOut()


@router.get(
    "/health/ready",
    response_model=ReadyOut,
    summary="Every dependency and service: ok or why not",
    responses={503: {"model": ReadyOut, "description": "Something is not ok; see `checks`"}},
)
def ready(response: Response, rt: Annotated[Runtime, Depends(runtime)]) -> ReadyOut:
    report = check_all(rt)
    if not report.ok:
        response.status_code = 503
    return ReadyOut(
        ok=report.ok, checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in report.checks]
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Metrics"}
    },
)
def metrics(state: Annotated[ApiState, Depends(api_state)]) -> Response:
    # The process-wide registry holds what other modules count (costs, vendor calls, the process itself).
    body = generate_latest(REGISTRY) + generate_latest(state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
