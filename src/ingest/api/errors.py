"""Every error the API answers is `{"error": {"code", "message"}}` with one clear line and no stack trace."""

from __future__ import annotations

from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.api.models import ErrorOut
from ingest.errors import IngestError, RateLimited, Unauthorized

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}
# What a client should wait before trying again while the database is away (a restart takes seconds).
DATABASE_RETRY_AFTER_S = 5
# SQLSTATE classes of a database that cannot serve now: connection exceptions, insufficient resources
# (too many connections), operator intervention (shutdown, restart, cannot connect now).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


class Forbidden(IngestError):
    """The key is valid but may not do this (e.g. a non-admin key switching modes)."""

    status = 403
    code = "forbidden"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def validation_message(exc: RequestValidationError) -> str:
    """The first problem as `where: what`, e.g. `body.top_k: Input should be less than or equal to 100`."""
    errors = exc.errors()
    if not errors:
        return "the request is malformed"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one_line(f"{where}: {first.get('msg', 'invalid')}{more}")


async def _ingest_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IngestError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.status >= 500:
        log.warning("request_failed", path=request.url.path, status=exc.status, error=str(exc))
    return error_response(exc.status, exc.code, _one_line(str(exc)) or exc.code, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The contract answers malformed input with 400; FastAPI's default 422 means "unreadable document" here.
    return error_response(400, "bad_request", validation_message(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, _one_line(message), dict(exc.headers or {}))


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    # Nobody reads this answer; it exists for the request log and the metrics.
    log.info("client_disconnected", path=request.url.path)
    return error_response(400, "client_disconnected", "the client disconnected before the request ended")


def database_unavailable(exc: psycopg.Error) -> bool:
    """Whether `exc` says the database cannot serve now (rather than that a statement is wrong)."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    # No SQLSTATE: the client lost or never got its connection.
    return exc.sqlstate is None or exc.sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _internal_error() -> JSONResponse:
    return error_response(500, "internal_error", "internal error; it has been logged")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    if not database_unavailable(exc):
        log.error("unhandled_error", path=request.url.path, exc_info=exc)
        return _internal_error()
    log.warning("database_unavailable", path=request.url.path, error=_one_line(str(exc), 200))
    return error_response(
        503,
        "database_unavailable",
        "the database is not reachable now; try again shortly",
        {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


class UnexpectedErrors:
    """Answers an unexpected exception with the JSON 500 and swallows it.

    Starlette's outermost ServerErrorMiddleware answers too, but then re-raises, and the server closes the
    connection on an exception that reaches it: every 500 reset the client's keep-alive connection. This
    sits inside it, so the exception stops here and the connection serves the client's next request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as exc:
            if started:
                # Half an answer is out (an event stream): only closing tells the client it is cut short.
                raise
            log.error("unhandled_error", path=scope.get("path"), exc_info=exc)
            await _internal_error()(scope, receive, send)


def install(app: FastAPI) -> None:
    handlers: dict[Any, Any] = {
        IngestError: _ingest_error,
        RequestValidationError: _validation_error,
        StarletteHTTPException: _http_error,
        ClientDisconnect: _client_disconnect,
        psycopg.Error: _database_error,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    app.add_middleware(UnexpectedErrors)


# Documented on every route (OpenAPI `responses=`); the body is the same model everywhere.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed request",
        401: "No or bad API key",
        403: "The key may not do this",
        404: "Not found, or not yours",
        409: "Not in a state that allows this",
        413: "Over the size limit",
        415: "A type the file's bytes do not show as supported",
        422: "A file that cannot be read",
        429: "Over the rate limit; see Retry-After",
        503: "Not ready, or the database is not reachable now; see Retry-After",
    }
    return {status: {"model": ErrorOut, "description": descriptions[status]} for status in statuses}
