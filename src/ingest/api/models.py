"""The API's request and response bodies: the public shape, kept apart from the store's rows."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from costs.money import fmt_usd
from costs.report import Amounts
from ingest.leases import LeaseState
from ingest.search_mode import SearchMode
from ingest.store.documents import Document
from ingest.store.embedding_batches import Waiting
from ingest.store.jobs import Job
from ingest.store.search import Hit
from router.decide import Mode
from router.modes import SERVICES

JobStatus = Literal["queued", "running", "completed", "failed", "deferred"]
Service = Enum("Service", {name: name for name in SERVICES}, type=str)  # type: ignore[misc]
# Money is an exact decimal in a string, as in `ingest costs --json`: JSON numbers are floats to most readers.
Usd = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]+$", examples=["0.000120"])]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorDetail(_Out):
    code: str = Field(description="Stable, machine-readable, e.g. `not_found`, `too_large`.")
    message: str = Field(description="One line for a human.")


class ErrorOut(_Out):
    error: ErrorDetail


# --- documents ------------------------------------------------------------------------------------

# `POST /v1/documents` reads the request stream itself (never buffered), so FastAPI cannot infer the form;
# this is what /docs shows and what clients (and the fuzzer) send.
UPLOAD_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The document. Its type is read from its bytes.",
        },
        "metadata": {
            "type": "string",
            "description": "A JSON object stored with the document and returned in the metadata of its search hits.",
        },
        "callback_url": {
            "type": "string",
            "format": "uri",
            "description": "Notified when the document finishes.",
        },
        "when_cheapest": {
            "type": "boolean",
            "description": "Embed through OpenAI's Batch API: half the price, done within 24 hours."
            " Unset: the deployment's default (INGEST_WHEN_CHEAPEST).",
        },
        "batch_fallback": {
            "type": "string",
            "enum": ["batch", "sync"],
            "description": "What the batch route does with inputs a batch did not embed: send them in a later"
            " batch, or embed them synchronously at the full price. Unset: INGEST_BATCH_FALLBACK.",
        },
    },
}


class UploadOut(_Out):
    document_id: UUID
    job_id: UUID
    status: JobStatus
    duplicate: bool = Field(
        description="True: these bytes were uploaded before; the ids are the first upload's."
    )
    filename: str


class DocumentOut(_Out):
    id: UUID
    filename: str
    media_type: str
    bytes: int
    sha256: str
    status: JobStatus
    chunks: int
    cost_usd: Usd = Field(description="Real money charged for it so far, in US dollars.")
    simulated_cost_usd: Usd = Field(description="What mock calls would have cost with the real services.")
    pages: int | None
    partial: bool = Field(description="Only part of the document could be read.")
    error: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, doc: Document, *, chunks: int, cost: Amounts) -> DocumentOut:
        return cls(
            id=doc.id,
            filename=doc.filename,
            media_type=doc.media_type,
            bytes=doc.bytes,
            sha256=doc.sha256,
            status=doc.status,  # type: ignore[arg-type]
            chunks=chunks,
            cost_usd=fmt_usd(cost.spent),
            simulated_cost_usd=fmt_usd(cost.simulated),
            pages=doc.pages,
            partial=doc.partial,
            error=doc.error,
            metadata=doc.metadata,
            created_at=doc.created_at,
            updated_at=doc.updated_at,
        )


class DocumentList(_Out):
    documents: list[DocumentOut] = Field(description="Newest first.")
    limit: int
    offset: int


# --- jobs -----------------------------------------------------------------------------------------


class LeaseOut(_Out):
    unit: str = Field(
        description="What is held: `parse`, `embed:<first>-<last>` (a batch of chunks), `queued`."
    )
    worker: str | None = Field(
        description="The worker process holding it (`host:pid:token`); null when its lease lapsed and the"
        " work was sent again, not yet taken."
    )
    last_heartbeat_at: datetime = Field(description="When that worker last reported.")
    expires_at: datetime = Field(
        description="When the lease lapses unless renewed; then the work is sent again."
    )

    @classmethod
    def of(cls, lease: LeaseState) -> LeaseOut:
        return cls(
            unit=lease.unit,
            worker=lease.owner,
            last_heartbeat_at=lease.renewed_at,
            expires_at=lease.expires_at,
        )


class BatchWaitOut(_Out):
    """The OpenAI batch a job waits for (stage `batch`: "waiting for batch")."""

    batch_id: str | None = Field(description="The vendor's batch id; null while the inputs gather.")
    deadline: datetime | None = Field(description="When the batch's 24 hour window ends.")


class JobOut(_Out):
    id: UUID
    document_id: UUID
    status: JobStatus
    stage: Literal["queued", "parse", "chunk", "embed", "batch", "done"] = Field(
        description="`batch`: its embeddings wait for an OpenAI batch (see `batch`)."
    )
    progress: float = Field(ge=0, le=1)
    attempts: int
    error: str | None = Field(
        description="Why it failed, or why it waits: deferred, or (stage `batch`) why its batch is not sent."
    )
    cost_usd: Usd = Field(description="Real money charged for this job so far, in US dollars.")
    simulated_cost_usd: Usd = Field(description="What its mock calls would have cost with the real services.")
    deferred_until: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    leases: list[LeaseOut] = Field(
        default_factory=list,
        description="Who works on the job now, while it runs: one lease per unit at work.",
    )
    embed_route: Literal["sync", "batch"] = Field(
        default="sync", description="`batch`: embedded through the Batch API (`when_cheapest`)."
    )
    batch: BatchWaitOut | None = Field(default=None, description="The batch the job waits for, if it does.")

    @classmethod
    def of(
        cls,
        job: Job,
        *,
        cost: Amounts,
        leases: list[LeaseState] | None = None,
        route: str = "sync",
        waiting: Waiting | None = None,
    ) -> JobOut:
        return cls(
            id=job.id,
            document_id=job.document_id,
            status=job.status,  # type: ignore[arg-type]
            stage=job.stage,  # type: ignore[arg-type]
            progress=job.progress,
            attempts=job.attempts,
            error=job.error,
            cost_usd=fmt_usd(cost.spent),
            simulated_cost_usd=fmt_usd(cost.simulated),
            deferred_until=job.deferred_until,
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            leases=[LeaseOut.of(lease) for lease in leases or []],
            embed_route=route,  # type: ignore[arg-type]
            batch=None
            if waiting is None
            else BatchWaitOut(batch_id=waiting.vendor_batch_id, deadline=waiting.expires_at),
        )


# --- search ---------------------------------------------------------------------------------------


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(default=5, ge=1, le=100)
    document_ids: list[UUID] | None = Field(
        default=None,
        max_length=1000,
        description="Search only these documents (other users' ids match nothing).",
    )
    mode: SearchMode = Field(
        default=SearchMode.HYBRID,
        description="hybrid: keyword and vector rankings fused; vector: nearest embeddings; keyword: BM25.",
    )
    offset: int = Field(default=0, ge=0, le=1000, description="Skip this many hits (paging).")
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Only documents whose upload metadata contains this object (JSON containment).",
    )
    min_score: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Only hits scoring at least this, in the mode's scale (see `score`).",
    )


class SearchHit(_Out):
    document_id: UUID
    chunk_id: int
    filename: str
    text: str
    score: float = Field(
        description="Higher is better. vector: cosine similarity; keyword: BM25; hybrid: the fused rank score,"
        " 1 for a chunk first in both rankings."
    )
    page_start: int | None = Field(description="First page the chunk comes from (None without pages).")
    page_end: int | None = Field(description="Last page the chunk comes from.")
    heading_path: list[str] = Field(description="The headings the chunk sits under, outermost first.")
    metadata: dict[str, Any] = Field(
        description="The upload's metadata, with the chunk's own (page_start, page_end, heading_path) over it."
    )

    @classmethod
    def of(cls, hit: Hit) -> SearchHit:
        return cls(
            document_id=hit.document_id,
            chunk_id=hit.chunk_id,
            filename=hit.filename,
            text=hit.text,
            score=hit.score,
            page_start=hit.page_start,
            page_end=hit.page_end,
            heading_path=hit.heading_path,
            metadata=hit.metadata,
        )


class SearchOut(_Out):
    results: list[SearchHit] = Field(description="Best first.")
    space: str | None = Field(
        default=None,
        description="The one embedding space read, `model/dimensions`; null when it holds nothing yet.",
    )


# --- costs ----------------------------------------------------------------------------------------


class AmountsOut(_Out):
    spent_usd: Usd = Field(description="Real charges.")
    reserved_usd: Usd = Field(description="Held for calls in flight, not yet charged.")
    limit_usd: Usd | None = Field(description="The daily limit; null: none.")
    simulated_usd: Usd = Field(description="Shadow cost of mock calls; never counted against a budget.")


class StageCostOut(_Out):
    calls: int
    estimated_usd: Usd
    actual_usd: Usd
    drift_usd: Usd


class BatchSavedOut(_Out):
    chunks: int
    tokens: int
    saved_usd: Usd = Field(description="Real money saved: the endpoint's price less the Batch API's.")
    simulated_usd: Usd = Field(description="The same for mock batches (shadow costs).")


class CostReportOut(_Out):
    """The same document as `ingest costs --json`: the deployment's for an admin key, else the user's."""

    scope: Literal["deployment", "user"] = Field(
        description="`deployment`: every user's costs and the limits (admin key); `user`: the costs of"
        " this key's user's documents, limits null."
    )
    date: str = Field(description="The budget day, YYYY-MM-DD.")
    timezone: str
    services: dict[str, AmountsOut]
    total: AmountsOut
    stages: dict[str, StageCostOut] = Field(description="Settled calls of the day by `service:stage`.")
    batch_saved: BatchSavedOut = Field(
        description="Chunks embedded through the Batch API today, and what that saved against the endpoint."
    )


# --- router ---------------------------------------------------------------------------------------


class ModesOut(_Out):
    modes: dict[str, Mode] = Field(description="Each service's mode.")


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode
    service: Service | None = Field(default=None, description="One service; all of them when left out.")


# --- health ---------------------------------------------------------------------------------------


class LiveOut(_Out):
    status: Literal["ok"] = "ok"


class CheckOut(_Out):
    name: str
    ok: bool
    detail: str


class ReadyOut(_Out):
    ok: bool
    checks: list[CheckOut] | None = Field(
        default=None, description="Each dependency and service; only for an admin key (operator data)."
    )
