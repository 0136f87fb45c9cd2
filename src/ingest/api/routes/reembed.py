"""`/v1/admin/reembed`: the `ingest reembed` of the API (admin key). Quote, start, follow, roll back, and
free the previous space; the workers do the work (workers/reembed.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from costs.money import fmt_usd
from ingest.api.auth import AdminUser
from ingest.api.errors import error_responses
from ingest.api.models import Usd
from ingest.api.state import runtime
from ingest.services import reembed as service
from ingest.store.vectors import Space
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/admin/reembed", tags=["admin"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]


class ReembedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200, description="The embedding model to move searches to.")
    dimensions: int | None = Field(
        default=None, ge=1, le=service.MAX_DIMENSIONS, description="Default: the configured dimensions."
    )
    estimate: bool = Field(default=False, description="Only quote: start nothing.")
    when_cheapest: bool = Field(
        default=False,
        description="Embed through OpenAI's Batch API: half the price, done within 24 hours (searches keep"
        " the active space meanwhile).",
    )
    batch_fallback: Literal["batch", "sync"] = Field(
        default="batch",
        description="What `when_cheapest` does with inputs a batch did not embed (expired, failed lines):"
        " send them in a later batch, or embed them synchronously at the full price.",
    )


class QuoteOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str = Field(description="The space searches read now, `model/dimensions`.")
    target: str = Field(description="The space the run builds, `model/dimensions`.")
    chunks: int = Field(description="Chunks still to give a vector in the target.")
    texts: int = Field(description="Distinct texts among them, per owner: each is embedded once.")
    cached_texts: int = Field(description="Texts the target's embedding cache already holds: not paid for.")
    tokens: int = Field(description="Tokens to pay for.")
    usd: Usd = Field(description="What those tokens cost at the target model's price.")
    batch_usd: Usd = Field(description="What they cost through the Batch API (`when_cheapest`).")


class RunOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    source: str
    target: str
    rollback: bool = Field(description="A run back to the previous space.")
    status: str = Field(description="`building`, `switched`, `cancelled`, `superseded` or `failed`.")
    route: str = Field(description="`sync` (the embeddings endpoint) or `batch` (the Batch API).")
    done: int = Field(description="Chunks of the source with their vector in the target.")
    total: int = Field(description="Chunks of the source (documents added meanwhile count).")
    charged_usd: Usd = Field(description="What the run's calls were charged so far.")
    quoted_usd: Usd
    waiting: str | None = Field(description="Why the run waits (budget, service, batch), or why it failed.")
    batch_id: str | None = Field(default=None, description="The Batch API batch a `batch` run waits for.")
    batch_deadline: datetime | None = Field(
        default=None, description="When that batch expires at the latest."
    )


class ReembedOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    quote: QuoteOut
    run: RunOut | None = Field(description="The run started; null for an estimate.")


class SpacesOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    active: str | None = Field(description="The space every search reads, `model/dimensions`.")
    previous: str | None = Field(description="The space the last switch left, kept for a rollback.")
    last_run: RunOut | None


def _name(space: Space | None) -> str | None:
    return None if space is None else f"{space.model}/{space.dimensions}"


def _quote(planned: service.Plan) -> QuoteOut:
    q = planned.quote
    return QuoteOut(
        source=f"{planned.source.model}/{planned.source.dimensions}",
        target=f"{q.model}/{q.dimensions}",
        chunks=q.chunks,
        texts=q.texts,
        cached_texts=q.cached_texts,
        tokens=q.tokens,
        usd=fmt_usd(q.usd),
        batch_usd=fmt_usd(q.batch_usd),
    )


def _run(rt: Runtime, run_id: int | None = None) -> RunOut | None:
    now = service.progress(rt, run_id)
    if now is None:
        return None
    return RunOut(
        id=now.run.id,
        source=f"{now.source.model}/{now.source.dimensions}",
        target=f"{now.target.model}/{now.target.dimensions}",
        rollback=now.run.rollback,
        status=now.run.status,
        done=now.done,
        total=now.total,
        charged_usd=fmt_usd(now.charged_usd),
        quoted_usd=fmt_usd(now.run.quoted_usd),
        route=now.run.embed_route,
        waiting=now.run.waiting_reason,
        batch_id=now.batch.vendor_batch_id if now.batch else None,
        batch_deadline=now.batch.expires_at if now.batch else None,
    )


def _started(
    rt: Runtime,
    planned: service.Plan,
    *,
    estimate: bool,
    when_cheapest: bool = False,
    fallback: str = "batch",
) -> ReembedOut:
    if estimate:
        return ReembedOut(quote=_quote(planned), run=None)
    run = service.start(rt, planned, when_cheapest=when_cheapest, batch_fallback=fallback)
    log.info("reembed_started", run=run.id, rollback=planned.rollback, route=run.embed_route)
    return ReembedOut(quote=_quote(planned), run=_run(rt, run.id))


@router.get(
    "",
    response_model=SpacesOut,
    summary="The active space and the last run (admin key)",
    responses=error_responses(401, 403),
)
def get_spaces(user: AdminUser, rt: RuntimeDep) -> SpacesOut:
    now = service.current(rt)
    return SpacesOut(active=_name(now.active), previous=_name(now.previous), last_run=_run(rt))


@router.post(
    "",
    response_model=ReembedOut,
    status_code=202,
    summary="Quote or start a re-embed (admin key)",
    responses=error_responses(400, 401, 403, 409),
)
def start_reembed(body: ReembedIn, user: AdminUser, rt: RuntimeDep) -> ReembedOut:
    return _started(
        rt,
        service.plan(rt, body.model, body.dimensions),
        estimate=body.estimate,
        when_cheapest=body.when_cheapest,
        fallback=body.batch_fallback,
    )


@router.post(
    "/rollback",
    response_model=ReembedOut,
    status_code=202,
    summary="Move every search back to the previous space (admin key)",
    responses=error_responses(401, 403, 409),
)
def rollback(user: AdminUser, rt: RuntimeDep) -> ReembedOut:
    return _started(rt, service.plan_rollback(rt), estimate=False)


@router.delete(
    "/previous",
    response_model=SpacesOut,
    summary="Free the previous space (admin key)",
    responses=error_responses(401, 403, 409),
)
def drop_previous(user: AdminUser, rt: RuntimeDep) -> SpacesOut:
    service.drop_previous(rt)
    now = service.current(rt)
    return SpacesOut(active=_name(now.active), previous=None, last_run=_run(rt))
