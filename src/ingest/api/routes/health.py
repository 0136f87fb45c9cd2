"""`/health/live`, `/health/ready` and `/metrics`: for orchestrators and scrapers.

Liveness and the bare readiness status need no key (an orchestrator has none). What the checks say (job
counts, modes, whether vendor keys are set, the budget left) is operator data: the readiness checks need
an admin key, and so does `/metrics` unless INGEST_METRICS_PUBLIC opens it for a Prometheus that can
reach the API only from a private network.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ingest.api.auth import OptionalUser
from ingest.api.errors import Forbidden, error_responses
from ingest.api.models import CheckOut, LiveOut, ReadyOut
from ingest.api.state import ApiState, api_state, runtime
from ingest.errors import Unauthorized
from ingest.services.health import check_all
from workers.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=LiveOut, summary="The process answers")
def live() -> LiveOut:
    return LiveOut()


@router.get(
    "/health/ready",
    response_model=ReadyOut,
    summary="Ready or not; with an admin key, every dependency and service: ok or why not",
    response_model_exclude_none=True,
    responses={
        503: {"model": ReadyOut, "description": "Something is not ok; an admin key sees what in `checks`"},
        **error_responses(401),
    },
)
def ready(response: Response, rt: Annotated[Runtime, Depends(runtime)], user: OptionalUser) -> ReadyOut:
    report = check_all(rt)
    if not report.ok:
        response.status_code = 503
    if user is None or not user.is_admin:
        return ReadyOut(ok=report.ok)
    return ReadyOut(
        ok=report.ok, checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in report.checks]
    )


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Metrics"},
        **error_responses(401, 403),
    },
)
def metrics(state: Annotated[ApiState, Depends(api_state)], user: OptionalUser) -> Response:
    if not state.rt.settings.metrics_public:
        if user is None:
            raise Unauthorized("/metrics needs an admin key (or INGEST_METRICS_PUBLIC=true)")
        if not user.is_admin:
            raise Forbidden("/metrics needs an admin key (ingest keys create --user NAME --admin)")
    # The process-wide registry holds what other modules count (costs, vendor calls, the process itself).
    body = generate_latest(REGISTRY) + generate_latest(state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
