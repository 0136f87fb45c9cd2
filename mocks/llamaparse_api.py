"""A LlamaParse (Parse API v2) stand-in that the official `llama-cloud` SDK talks to unchanged.

Point the SDK at it (`LLAMA_CLOUD_BASE_URL`) with any non-empty key. Shapes follow llama-cloud 2.19:
    POST /api/v1/beta/files              multipart `file`, `purpose`         -> FileCreateResponse
    POST /api/v2/parse                   JSON {tier, version, file_id, ...}  -> ParsingCreateResponse
    POST /api/v2/parse/upload            multipart `file`, `configuration`   -> ParsingCreateResponse
    GET  /api/v2/parse                   filters, cursor                     -> {items, next_page_token}
    GET  /api/v2/parse/{id}?expand=...   {job, markdown?, text?, metadata?, job_metadata?}
    POST /api/v2/parse/{id}/cancel                                           -> the job, CANCELLED
Errors answer `{"detail": ...}` like the real API. Jobs, charges and webhooks: `mocks.llamaparse_jobs`.
The `fast` tier, as the real one, answers `text` but no `markdown`; `job.usage` needs `expand=usage`.
`app.state.llamaparse` (a StandinState) holds every file, job and delivery and what was charged.

Faults: HTTP ones from `mocks.faults` (FaultPlan; header `X-Mock-Faults`); job ones from
`LlamaParseFaults` (env `MOCKS_LLAMAPARSE_*`; header `X-Mock-LlamaParse: stuck_first=1,seed=3` on
the request that creates the job). All draws are reproducible for a seed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from mocks.faults import FaultInjector, FaultPlan, apply
from mocks.llamaparse_jobs import (
    CREDITS_PER_PAGE,
    PROJECT_ID,
    TERMINAL,
    Job,
    LlamaParseFaults,
    StandinState,
    StoredFile,
    set_status,
    start_job,
    store_file,
)

__all__ = ["LlamaParseFaults", "StandinState", "create_app"]


class WebhookConfiguration(BaseModel):
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    webhook_headers: dict[str, Any] | None = None
    webhook_output_format: Literal["json", "string"] | None = None
    webhook_signing_secret: str | None = None


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # options the stand-in does not act on are accepted

    tier: Literal["fast", "cost_effective", "agentic", "agentic_plus"]
    version: str
    file_id: str | None = None
    source_url: str | None = None
    user_metadata: dict[str, str] | None = None
    webhook_configurations: list[WebhookConfiguration] | None = None


class _Injected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def create_app(
    plan: FaultPlan | None = None,
    *,
    webhook_secret: str | None = None,
    faults: LlamaParseFaults | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The stand-in; `api_key` set: only that key is accepted (else any non-empty one)."""
    plan = plan or FaultPlan()
    state = StandinState(
        plan, faults or LlamaParseFaults.from_env(), webhook_secret, api_key, FaultInjector(plan)
    )

    async def inject_faults(request: Request) -> None:
        try:
            request_plan = state.plan.merged_with_headers(request.headers)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        route = request.scope.get("route")
        key = f"llamaparse:{request.method} {getattr(route, 'path', request.url.path)}"
        response = await apply(state.injector.decide(key, request_plan))
        if response is not None:
            raise _Injected(response)

    def authenticate(request: Request) -> None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip() or (state.api_key and key.strip() != state.api_key):
            raise HTTPException(401, "Invalid authentication credentials")

    api = APIRouter(prefix="/api", dependencies=[Depends(inject_faults), Depends(authenticate)])

    @api.post("/v1/beta/files")
    async def upload_file(
        file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
    ) -> dict[str, Any]:
        stored = store_file(state, file.filename or "upload", await file.read())
        return {
            "id": stored.id,
            "name": stored.name,
            "project_id": PROJECT_ID,
            "file_type": stored.name.rpartition(".")[2] or None,
            "purpose": purpose,
            "expires_at": None,
        }

    @api.post("/v2/parse")
    async def create_job(body: ParseRequest, request: Request) -> dict[str, Any]:
        if body.file_id is None or body.file_id not in state.files:
            raise HTTPException(404 if body.file_id else 400, "Give the file_id of an uploaded file")
        return _start(state, state.files[body.file_id], body, request.headers).as_json()

    @api.post("/v2/parse/upload")
    async def upload_and_parse(
        request: Request, file: Annotated[UploadFile, File()], configuration: Annotated[str, Form()]
    ) -> dict[str, Any]:
        try:
            body = ParseRequest.model_validate_json(configuration)
        except ValidationError as exc:
            raise HTTPException(422, json.loads(exc.json())) from None
        stored = store_file(state, file.filename or "upload", await file.read())
        return _start(state, stored, body, request.headers).as_json()

    @api.get("/v2/parse")
    async def list_jobs(
        status: str | None = None,
        job_ids: Annotated[list[str] | None, Query()] = None,
        created_at_on_or_after: datetime | None = None,
        created_at_on_or_before: datetime | None = None,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        after, before = _utc(created_at_on_or_after), _utc(created_at_on_or_before)
        jobs = [
            job
            for job in reversed(state.jobs.values())  # newest first
            if (status is None or job.status == status)
            and (not job_ids or job.id in job_ids)
            and (after is None or job.created_at >= after)
            and (before is None or job.created_at <= before)
        ]
        start = int(page_token or 0)
        following = start + page_size
        return {
            "items": [job.as_json() for job in jobs[start:following]],
            "next_page_token": str(following) if following < len(jobs) else None,
        }

    @api.get("/v2/parse/{job_id}")
    async def get_job(job_id: str, expand: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        job = _find(state, job_id)
        wanted = {part.strip() for item in expand or [] for part in item.split(",")}
        answer: dict[str, Any] = {"job": job.as_json(usage="usage" in wanted)}
        if job.status != "COMPLETED":
            return answer
        numbered = list(enumerate(job.pages, start=1))
        if "markdown" in wanted and job.tier != "fast":
            answer["markdown"] = {
                "pages": [{"page_number": n, "markdown": md, "success": True} for n, md in numbered]
            }
        if "markdown_full" in wanted and job.tier != "fast":
            answer["markdown_full"] = "\n\n".join(job.pages)
        if "text" in wanted:
            answer["text"] = {"pages": [{"page_number": n, "text": t} for n, t in enumerate(job.texts, 1)]}
        if "text_full" in wanted:
            answer["text_full"] = "\n\n".join(job.texts)
        if "metadata" in wanted:
            answer["metadata"] = {"pages": [{"page_number": n} for n, _ in numbered]}
        if "job_metadata" in wanted:
            answer["job_metadata"] = {
                "page_count": len(job.pages),
                "credits_per_page": CREDITS_PER_PAGE[job.tier],
                "tier": job.tier,
                "version": job.version,
            }
        return answer

    @api.post("/v2/parse/{job_id}/cancel")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        job = _find(state, job_id)
        if job.status in TERMINAL:
            raise HTTPException(400, f"Job is already {job.status} and cannot be cancelled")
        set_status(state, job, "CANCELLED")
        return job.as_json()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for task in list(state.tasks):
            task.cancel()

    async def injected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Injected)
        return exc.response

    app = FastAPI(title="LlamaParse stand-in", lifespan=lifespan)
    app.include_router(api)
    app.add_exception_handler(_Injected, injected)
    app.state.llamaparse = state
    return app


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _find(state: StandinState, job_id: str) -> Job:
    if job_id not in state.jobs:
        raise HTTPException(404, "Job not found")
    return state.jobs[job_id]


def _start(state: StandinState, stored: StoredFile, body: ParseRequest, headers: Mapping[str, str]) -> Job:
    if body.source_url:
        raise HTTPException(400, "source_url is not supported by the stand-in: upload the file")
    try:
        faults = state.faults.merged_with_headers(headers)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return start_job(
        state,
        stored,
        tier=body.tier,
        version=body.version,
        webhooks=[config.model_dump() for config in body.webhook_configurations or [] if config.webhook_url],
        user_metadata=body.user_metadata,
        faults=faults,
    )
