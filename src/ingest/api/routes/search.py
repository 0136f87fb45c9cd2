"""`POST /v1/search`: the key's user's chunks nearest to a query, best first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ingest.api.errors import error_responses
from ingest.api.models import SearchHit, SearchIn, SearchOut
from ingest.api.request_limits import SearchingUser
from ingest.api.state import runtime
from ingest.services.search import search_in_space
from workers.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["search"])


@router.post(
    "/search",
    response_model=SearchOut,
    summary="Search your documents",
    responses=error_responses(400, 401, 429),
)
def search_documents(
    body: SearchIn, user: SearchingUser, rt: Annotated[Runtime, Depends(runtime)]
) -> SearchOut:
    searched = search_in_space(
        rt,
        user,
        body.query,
        top_k=body.top_k,
        document_ids=body.document_ids,
        mode=body.mode,
        offset=body.offset,
        metadata=body.metadata,
        min_score=body.min_score,
    )
    space = searched.space
    return SearchOut(
        results=[SearchHit.of(hit) for hit in searched.hits],
        space=None if space is None else f"{space.model}/{space.dimensions}",
    )
