"""`/v1/router`: read the services' modes; switch them with an admin key (seen by every process)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends

from ingest.api.auth import AdminUser, CurrentUser
from ingest.api.errors import error_responses
from ingest.api.models import ModeIn, ModesOut
from ingest.api.state import runtime
from router.modes import SERVICES
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/router", tags=["router"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]


@router.get("", response_model=ModesOut, summary="The services' modes", responses=error_responses(401))
def get_modes(user: CurrentUser, rt: RuntimeDep) -> ModesOut:
    return ModesOut(modes=rt.router.modes.all())


@router.put(
    "", response_model=ModesOut, summary="Switch a mode (admin key)", responses=error_responses(400, 401, 403)
)
def set_modes(body: ModeIn, user: AdminUser, rt: RuntimeDep) -> ModesOut:
    services = (body.service.value,) if body.service is not None else SERVICES
    rt.router.modes.set(body.mode, services)
    log.info("mode_set", services=list(services), mode=body.mode.value)
    return ModesOut(modes=rt.router.modes.all())
