"""`/v1/documents`: upload (streamed), list, read and delete the key's user's documents."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ingest.api.auth import CurrentUser
from ingest.api.errors import error_responses
from ingest.api.models import UPLOAD_FORM_SCHEMA, DocumentList, DocumentOut, UploadOut
from ingest.api.request_limits import UploadingUser
from ingest.api.routes.costs import document_costs
from ingest.api.state import runtime
from ingest.api.uploads import receive_upload
from ingest.errors import NotFound
from ingest.services import deletion
from ingest.services.submit import submit_file
from ingest.store import chunks, documents
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/documents", tags=["documents"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]


@router.post(
    "",
    status_code=202,
    response_model=UploadOut,
    summary="Upload a document",
    description=(
        "Multipart form: `file`, optional `metadata` (a JSON object), `callback_url`, `when_cheapest`"
        " (embed through the Batch API at half the price, within 24 hours) and `batch_fallback`. 202: accepted and "
        "queued. 200: the same bytes were uploaded before by this user; the first upload's ids, no new cost."
    ),
    responses={
        200: {"model": UploadOut, "description": "A duplicate"},
        **error_responses(400, 401, 413, 415, 422, 429),
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": UPLOAD_FORM_SCHEMA}}}
    },
)
async def upload_document(
    request: Request, response: Response, user: UploadingUser, rt: RuntimeDep
) -> UploadOut:
    async with receive_upload(request, rt.settings) as upload:
        submitted = await run_in_threadpool(
            submit_file,
            rt,
            upload.path,
            user=user,
            filename=upload.filename,
            metadata=upload.metadata,
            callback_url=upload.callback_url,
            when_cheapest=upload.when_cheapest,
            batch_fallback=upload.batch_fallback,
            digest=(upload.sha256, upload.size),
        )
    if submitted.duplicate:
        response.status_code = 200
    log.info(
        "document_uploaded",
        document_id=str(submitted.document_id),
        job_id=str(submitted.job_id),
        bytes=upload.size,
        duplicate=submitted.duplicate,
    )
    return UploadOut(
        document_id=submitted.document_id,
        job_id=submitted.job_id,
        status=submitted.status,  # type: ignore[arg-type]
        duplicate=submitted.duplicate,
        filename=submitted.filename,
    )


@router.get(
    "", response_model=DocumentList, summary="List your documents", responses=error_responses(400, 401)
)
def list_documents(
    user: CurrentUser,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DocumentList:
    with rt.pool.connection() as conn:
        docs = documents.list_for_owner(conn, user.id, limit=limit, offset=offset)
        ids = [d.id for d in docs]
        counts = chunks.counts(conn, ids)
        costs = document_costs(rt, conn, ids)
    return DocumentList(
        documents=[DocumentOut.of(d, chunks=counts.get(d.id, 0), cost=costs[d.id]) for d in docs],
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{document_id}",
    response_model=DocumentOut,
    summary="One of your documents",
    responses=error_responses(400, 401, 404),
)
def get_document(document_id: UUID, user: CurrentUser, rt: RuntimeDep) -> DocumentOut:
    with rt.pool.connection() as conn:
        doc = documents.get(conn, document_id, owner_id=user.id)
        if doc is None:
            raise NotFound(f"no document {document_id}")
        n_chunks = chunks.count(conn, doc.id)
        cost = document_costs(rt, conn, [doc.id])[doc.id]
    return DocumentOut.of(doc, chunks=n_chunks, cost=cost)


@router.delete(
    "/{document_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a document with its chunks and vectors",
    responses=error_responses(400, 401, 404, 409),
)
def delete_document(document_id: UUID, user: CurrentUser, rt: RuntimeDep) -> Response:
    blob_deleted = deletion.delete_document(rt, document_id, owner_id=user.id)
    log.info("document_deleted", document_id=str(document_id), blob_deleted=blob_deleted)
    return Response(status_code=204)
