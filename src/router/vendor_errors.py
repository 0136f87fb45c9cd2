"""One reading of vendor failures for every client: what kind of failure, how long the vendor asks us to wait.

Both vendor SDKs are Stainless-generated: their errors carry `status_code`, `body` and `response`
(`openai` over httpx2, `llama_cloud` over httpx). Raw httpx/httpx2 errors carry `response` too. So
`classify` reads those attributes by duck typing and imports no SDK: the same rules serve both vendors,
their raw HTTP calls, and the stand-ins.

Messages built here never carry a key: vendor messages echo masked keys ("Incorrect API key provided:
sk-ab***cd"), so every vendor text is redacted before it reaches a log or an error.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from enum import Enum

from ingest.errors import VendorError


class ErrorClass(Enum):
    RATE_LIMITED = "rate_limited"  # 429: wait (Retry-After) and try again
    TRANSIENT = "transient"  # 5xx, 408/409, timeouts, dropped connections, malformed bodies
    FATAL_AUTH = "fatal_auth"  # 401/403: no retry fixes a bad key
    FATAL_QUOTA = "fatal_quota"  # 402, openai's insufficient_quota: no retry fixes an empty account
    BAD_INPUT_TOO_LARGE = "bad_input_too_large"  # 413, or a 400 that says the input is too big: split
    BAD_INPUT = "bad_input"  # any other 4xx
    UNKNOWN = "unknown"  # not an HTTP or vendor failure at all (a bug of ours): never retried


RETRYABLE = frozenset({ErrorClass.RATE_LIMITED, ErrorClass.TRANSIENT})


class MalformedResponse(Exception):
    """A 2xx whose body is not what the API promises (truncated, wrong count, undecodable)."""


# Error codes that mean "the account has no money left", whatever the status (openai sends 429).
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})
# What a 400 says when the input is too big; splitting the batch may fix those.
_TOO_LARGE_CODES = frozenset({"max_tokens_per_request", "context_length_exceeded", "string_above_max_length"})
_TOO_LARGE_TEXT = re.compile(
    r"maximum context length|tokens per request|2048 or less|array too long|too large|too many inputs",
    re.IGNORECASE,
)
# Class names (anywhere in the MRO) of "the request never got an answer" errors: openai's and
# llama_cloud's APIConnectionError/APITimeoutError, httpx/httpx2 TransportError and DecodingError.
_TRANSPORT_NAMES = frozenset({"APIConnectionError", "TransportError", "TimeoutException", "DecodingError"})
# Messages keep enough to debug; keys and token-like strings go.
_KEY_LIKE = re.compile(r"\b(?:sk|llx|rk)-[A-Za-z0-9_\-*.]{6,}")
_MAX_MESSAGE = 300


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def headers_of(exc: BaseException) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else None


def error_body(exc: BaseException) -> Mapping[str, object]:
    """The vendor's error object: openai's `{"error": {...}}` unwrapped, llama_cloud's `{"detail": ...}`."""
    body = getattr(exc, "body", None)
    if body is None:
        response = getattr(exc, "response", None)
        try:
            body = response.json() if response is not None else None
        except (ValueError, AttributeError, RuntimeError):  # not JSON, or a streamed body not read
            body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    return body if isinstance(body, Mapping) else {}


def error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    body = error_body(exc)
    for name in ("code", "type"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def error_message(exc: BaseException) -> str:
    body = error_body(exc)
    for name in ("message", "detail", "error"):
        value = body.get(name)
        if isinstance(value, str) and value:
            return value
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)


def classify_status(status: int, code: str | None = None, message: str = "") -> ErrorClass:
    """The class of an HTTP answer: a pure function of its status, error code and message."""
    if code in _QUOTA_CODES:
        return ErrorClass.FATAL_QUOTA
    if status == 429:
        # A single request above the per-minute token limit is refused the same way every time.
        too_big = message.lower().startswith("request too large")
        return ErrorClass.BAD_INPUT_TOO_LARGE if too_big else ErrorClass.RATE_LIMITED
    if status == 402:
        return ErrorClass.FATAL_QUOTA
    if status in (401, 403):
        return ErrorClass.FATAL_AUTH
    if status in (408, 409):  # request timeout, lock timeout: the SDKs retry these too
        return ErrorClass.TRANSIENT
    if status == 413 or (status == 400 and (code in _TOO_LARGE_CODES or _TOO_LARGE_TEXT.search(message))):
        return ErrorClass.BAD_INPUT_TOO_LARGE
    if 400 <= status < 500:
        return ErrorClass.BAD_INPUT
    # 5xx; or a 2xx the SDK could not read (APIResponseValidationError): both are worth another try.
    return ErrorClass.TRANSIENT


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return any(cls.__name__ in _TRANSPORT_NAMES for cls in type(exc).__mro__)


def classify(exc: BaseException) -> ErrorClass:
    """The class of any exception a vendor call raised (SDK, httpx, httpx2 or our own parsing)."""
    status = status_of(exc)
    if status is not None:
        return classify_status(status, error_code(exc), error_message(exc))
    if _is_transport_error(exc) or isinstance(exc, (MalformedResponse, json.JSONDecodeError)):
        return ErrorClass.TRANSIENT
    return ErrorClass.UNKNOWN


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait per `retry-after-ms`, else `Retry-After` (seconds or an HTTP date); None if absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) / scale
        except ValueError:
            continue
        if seconds >= 0 and seconds != float("inf"):
            return seconds
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_seconds(exc: BaseException) -> float | None:
    headers = headers_of(exc)
    return None if headers is None else parse_retry_after(headers)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """One safe line: status, code, request id and the (redacted, shortened) vendor message."""
    parts = []
    status = status_of(exc)
    if status is not None:
        parts.append(f"HTTP {status}")
    code = error_code(exc)
    if code:
        parts.append(code)
    headers = headers_of(exc) or {}
    request_id = getattr(exc, "request_id", None) or headers.get("x-request-id")
    if request_id:
        parts.append(f"request {request_id}")
    message = " ".join(redact(error_message(exc), secrets).split())[:_MAX_MESSAGE]
    head = " ".join(parts) if parts else type(exc).__name__
    return f"{head}: {message}" if message else head


def vendor_failure(service: str, exc: BaseException, secrets: Iterable[str] = ()) -> VendorError:
    """The VendorError for a failure no retry will fix, worded by its class."""
    kind = classify(exc)
    status = status_of(exc)
    where = f" (HTTP {status})" if status is not None else ""
    if kind is ErrorClass.FATAL_AUTH:
        # The vendor's own text may echo part of the key: it is left out entirely.
        return VendorError(f"{service}: the API key was refused{where}; check the key and its permissions")
    if kind is ErrorClass.FATAL_QUOTA:
        return VendorError(
            f"{service}: the account is out of quota or credit{where}; add credit or raise the limit"
        )
    return VendorError(f"{service}: request rejected: {describe(exc, secrets)}")
