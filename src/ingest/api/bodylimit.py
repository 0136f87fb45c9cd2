"""Request bodies bounded before anything reads them: before the key is checked, before parsing.

Without it, a request with no key and a 300 MB JSON body was read whole (FastAPI reads a JSON body before
it resolves the key's dependency) before the 401. Each route has a limit: uploads their own (the file
limit plus the form's overhead; they stream to disk), LlamaParse webhook events 64 KB, every other route
a small one (INGEST_MAX_JSON_BODY_KB). A declared `Content-Length` over the limit is answered 413 at
once, reading nothing; a body without one (chunked) is counted as it is received and refused the moment
it passes the limit, so at most the limit and one received chunk are ever held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.api.routes.webhooks import MAX_EVENT_BYTES
from ingest.api.uploads import FORM_OVERHEAD_BYTES
from ingest.config import Settings

UPLOAD_ROUTE = ("POST", "/v1/documents")
WEBHOOK_ROUTE = ("POST", "/v1/webhooks/llamaparse")


@dataclass(frozen=True, slots=True)
class Cap:
    max_bytes: int
    message: str  # the 413's


def body_cap(method: str, path: str, settings: Settings) -> Cap:
    """The most bytes of body the route at `method path` accepts."""
    route = (method, path.rstrip("/"))
    if route == UPLOAD_ROUTE:
        return Cap(
            settings.max_upload_mb * 1024 * 1024 + FORM_OVERHEAD_BYTES,
            f"the upload is larger than the {settings.max_upload_mb} MB limit",
        )
    max_bytes = MAX_EVENT_BYTES if route == WEBHOOK_ROUTE else settings.max_json_body_kb * 1024
    return Cap(max_bytes, f"the request body is larger than this route's limit of {max_bytes // 1024} KB")


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimit:
    """Pure ASGI middleware (never buffers): refuses a body over its route's limit with a 413 JSON error."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(scope["method"], scope["path"], self.settings)
        declared = declared_length(scope)
        if declared is not None and declared > cap.max_bytes:
            # Answered unread; the server then drains what the client still sends, holding none of it.
            await _refuse(send, cap.message)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.max_bytes:
                    # FastAPI passes its own HTTPException through body reading (any other error becomes
                    # a 400); the app's error handler turns it into the JSON 413.
                    raise HTTPException(status_code=413, detail=cap.message)
            return message

        await self.app(scope, capped_receive, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps({"error": {"code": "too_large", "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
