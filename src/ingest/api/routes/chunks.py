"""`GET /v1/documents/{id}/chunks`: a document's chunks in reading order, with their pages and headings,
and the document's latest job (the one to follow or retry)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from ingest.api.auth import CurrentUser
from ingest.api.errors import error_responses
from ingest.api.state import runtime
from ingest.errors import NotFound
from ingest.store import chunks, documents, jobs
from ingest.store.chunks import ChunkView
from workers.runtime import Runtime

router = APIRouter(prefix="/v1/documents", tags=["documents"])


class ChunkOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    ordinal: int = Field(description="Position in the document, from 0.")
    text: str
    tokens: int
    page_start: int | None = Field(description="First page the chunk covers; null for types without pages.")
    page_end: int | None
    heading_path: list[str] = Field(description="The headings above the chunk, outermost first.")

    @classmethod
    def of(cls, chunk: ChunkView) -> ChunkOut:
        meta: dict[str, Any] = chunk.metadata
        headings = meta.get("heading_path") or []
        return cls(
            id=chunk.id,
            ordinal=chunk.ordinal,
            text=chunk.text,
            tokens=chunk.token_count,
            page_start=meta.get("page_start"),
            page_end=meta.get("page_end"),
            heading_path=[str(h) for h in headings],
        )


class ChunkList(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: UUID
    job_id: UUID | None = Field(description="The document's latest job: follow it, or retry it if it failed.")
    chunks: list[ChunkOut] = Field(description="In reading order.")
    limit: int
    offset: int


@router.get(
    "/{document_id}/chunks",
    response_model=ChunkList,
    summary="A document's chunks with pages and headings",
    responses=error_responses(400, 401, 404),
)
def list_chunks(
    document_id: UUID,
    user: CurrentUser,
    rt: Annotated[Runtime, Depends(runtime)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ChunkList:
    with rt.pool.connection() as conn:
        if documents.get(conn, document_id, owner_id=user.id) is None:
            raise NotFound(f"no document {document_id}")
        job = jobs.latest_for_document(conn, document_id)
        page = chunks.page_of(conn, document_id, limit=limit, offset=offset)
    return ChunkList(
        document_id=document_id,
        job_id=job.id if job is not None else None,
        chunks=[ChunkOut.of(c) for c in page],
        limit=limit,
        offset=offset,
    )
