"""`POST /v1/webhooks/llamaparse`: LlamaParse parse-job events. The signature is the authentication (no
API key): `LC-Signature: sha256=<hex HMAC-SHA256 of the raw body>` keyed with
INGEST_LLAMAPARSE_WEBHOOK_SECRET, checked by `router.llamaparse.webhook.verify` before anything is read.

A refused delivery (no or wrong signature, a timestamp more than 5 minutes from now) answers 401 and
changes nothing. An `event_id` seen before answers 200 and changes nothing. A new event only wakes the
worker waiting on that parse job; the worker then asks LlamaParse for the job with our key, so nothing
in the event is trusted beyond the job id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ingest.api.errors import error_response, error_responses
from ingest.api.state import runtime
from ingest.errors import TooLarge
from ingest.store import webhooks
from router.llamaparse.webhook import (
    SIGNATURE_HEADER,
    MalformedEvent,
    WebhookEvent,
    WebhookVerificationError,
    verify,
)
from workers.runtime import Runtime

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

# A thin event is a few hundred bytes; anyone can reach this route, so it never buffers more than this.
MAX_EVENT_BYTES = 64 * 1024

_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event_id", "event_type", "timestamp", "data"],
    "properties": {
        "event_id": {"type": "string"},
        "event_type": {"type": "string", "examples": ["parse.success"]},
        "timestamp": {"type": "string", "format": "date-time"},
        "data": {"type": "object", "required": ["job_id"], "properties": {"job_id": {"type": "string"}}},
    },
}


class WebhookAck(BaseModel):
    model_config = ConfigDict(frozen=True)

    received: bool = True
    duplicate: bool = Field(description="True: this event_id was handled before; nothing was done again.")


_UNSIGNED: dict[int | str, dict[str, Any]] = {
    401: error_responses(401)[401] | {"description": "Unsigned, wrongly signed or stale"}
}


@router.post(
    "/llamaparse",
    response_model=WebhookAck,
    summary="LlamaParse parse-job events (signed; no API key)",
    description=(
        "Called by LlamaParse, not by users. The raw body must carry a valid `LC-Signature` and a "
        "`timestamp` within 5 minutes of now; the job's result is then fetched from LlamaParse."
    ),
    responses=_UNSIGNED | error_responses(400, 413),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}}
    },
)
async def llamaparse_event(
    request: Request,
    rt: Annotated[Runtime, Depends(runtime)],
    signature: Annotated[
        str | None, Header(alias=SIGNATURE_HEADER, description="sha256=<hex HMAC-SHA256 of the raw body>")
    ] = None,
) -> WebhookAck | JSONResponse:
    body = await _raw_body(request)  # the exact bytes: re-serialised JSON would not match the signature
    secret = rt.settings.llamaparse_webhook_secret
    try:
        event = verify(body, signature, secret.get_secret_value() if secret else "", now=datetime.now(UTC))
    except MalformedEvent as exc:
        return error_response(400, "bad_request", str(exc))
    except WebhookVerificationError as exc:
        log.warning("llamaparse_webhook_refused", reason=str(exc))
        return error_response(401, "unauthorized", str(exc))
    new = await run_in_threadpool(_accept, rt, event)
    log.info(
        "llamaparse_webhook",
        event_id=event.event_id,
        event_type=event.event_type,
        vendor_job_id=event.data.job_id,
        duplicate=not new,
    )
    return WebhookAck(duplicate=not new)


async def _raw_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise TooLarge(f"a webhook event is at most {MAX_EVENT_BYTES} bytes")
    return bytes(body)


def _accept(rt: Runtime, event: WebhookEvent) -> bool:
    """Record the event and wake its job's waiting worker; False for an event_id seen before."""
    with rt.pool.connection() as conn, conn.transaction():
        if not webhooks.record_event(conn, event.event_id, event.event_type, event.data.job_id):
            return False
        # Inside the transaction: should the wake-up fail, the event stays unrecorded, and the vendor's
        # retry of it is taken as new rather than as a replay.
        rt.router.llamaparse_signal().notify(event.data.job_id)
    return True
