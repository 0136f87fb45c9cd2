"""`GET /v1/costs`: the budget day's report, the same document as `ingest costs --json`; and the cost
look-ups the document and job answers share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated
from uuid import UUID

import psycopg
from fastapi import APIRouter, Depends, Query

from costs import report
from costs.report import Amounts
from ingest.api.auth import CurrentUser
from ingest.api.errors import error_responses
from ingest.api.models import CostReportOut
from ingest.api.state import runtime
from workers.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["costs"])


@router.get(
    "/costs",
    response_model=CostReportOut,
    summary="Spent, reserved and limit per service for a budget day",
    description=(
        "An admin key sees the whole deployment (limits included), as `ingest costs --json`; any other key"
        " sees the costs of its own user's documents only, without limits (`scope` says which)."
    ),
    responses=error_responses(400, 401),
)
def get_costs(
    user: CurrentUser,
    rt: Annotated[Runtime, Depends(runtime)],
    date: Annotated[dt.date | None, Query(description="Budget day, YYYY-MM-DD (default: today).")] = None,
) -> CostReportOut:
    # Another user's spend, or the deployment's, is operator data: a user sees their own documents' costs.
    owner_id = None if user.is_admin else user.id
    day = rt.router.meter.report(date, owner_id=owner_id)
    return CostReportOut.model_validate(
        {**report.to_json(day), "scope": "deployment" if owner_id is None else "user"}
    )


def document_costs(
    rt: Runtime, conn: psycopg.Connection, document_ids: Sequence[UUID]
) -> dict[UUID, Amounts]:
    return report.by_documents(conn, document_ids, at=rt.router.meter.clock())


def job_cost(rt: Runtime, conn: psycopg.Connection, job_id: UUID) -> Amounts:
    return report.by_jobs(conn, [job_id], at=rt.router.meter.clock())[job_id]
