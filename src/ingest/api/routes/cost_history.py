"""`GET /v1/costs/days`: cost per budget day for a chart (the key's user's documents; everything for an
admin key), and `PUT /v1/costs/limits`: an admin sets a daily limit, as `ingest budget set` does."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from costs import history, ledger
from costs.money import fmt_usd, usd
from costs.report import to_json
from ingest.api.auth import AdminUser, CurrentUser
from ingest.api.errors import error_responses
from ingest.api.models import CostReportOut, Service, Usd
from ingest.api.state import runtime
from ingest.errors import IngestError
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/costs", tags=["costs"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]
# cost_budgets.daily_limit_usd is numeric(20, 12): eight digits before the point.
MAX_LIMIT = Decimal(99999999)


class DayCostOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    date: str = Field(description="The budget day, YYYY-MM-DD.")
    spent_usd: dict[str, Usd] = Field(description="Real charges by service.")
    simulated_usd: dict[str, Usd] = Field(description="Shadow cost of mock calls by service.")


class DaysOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    scope: str = Field(
        description="`user`: the key's user's documents; `deployment`: the whole deployment (admin key)."
    )
    days: list[DayCostOut] = Field(description="Oldest first, ending with today's budget day.")


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit_usd: str = Field(
        max_length=40, description='Daily limit in US dollars, an exact decimal string, e.g. "5" or "0.25".'
    )
    service: Service | None = Field(
        default=None, description="One service; all services together if left out."
    )


@router.get(
    "/days",
    response_model=DaysOut,
    summary="Cost per budget day, the last N days",
    responses=error_responses(400, 401),
)
def cost_days(
    user: CurrentUser,
    rt: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=366, description="How many budget days, ending today.")] = 30,
) -> DaysOut:
    owner = None if user.is_admin else user.id
    with rt.pool.connection() as conn:
        found = history.daily(conn, rt.router.meter.today(), days, owner_id=owner)
    return DaysOut(
        scope="user" if owner is not None else "deployment",
        days=[
            DayCostOut(
                date=d.day.isoformat(),
                spent_usd={s: fmt_usd(a) for s, a in d.spent.items()},
                simulated_usd={s: fmt_usd(a) for s, a in d.simulated.items()},
            )
            for d in found
        ],
    )


@router.put(
    "/limits",
    response_model=CostReportOut,
    summary="Set a daily limit (admin key)",
    responses=error_responses(400, 401, 403),
)
def set_limit(body: LimitIn, user: AdminUser, rt: RuntimeDep) -> CostReportOut:
    try:
        amount = usd(body.limit_usd)
    except (TypeError, ValueError) as exc:
        raise IngestError(str(exc)) from None
    if amount > MAX_LIMIT:
        raise IngestError(f"a daily limit is at most ${MAX_LIMIT}")
    service = body.service.value if body.service is not None else ledger.ALL
    with rt.pool.connection() as conn:
        ledger.set_limit(conn, service, amount)
    log.info("budget_set", service=service, limit_usd=fmt_usd(amount))
    return CostReportOut.model_validate({**to_json(rt.router.meter.report()), "scope": "deployment"})
