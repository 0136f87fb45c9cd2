"""LlamaParse webhook deliveries: signing and verification. Pure functions, no I/O.

A delivery is a POST whose raw body is the thin event `{event_id, event_type, timestamp, data: {job_id}}`
and whose `LC-Signature` header is `sha256=<hex HMAC-SHA256 of the raw body>` keyed with the job's
`webhook_signing_secret` (llama-cloud 2.19, `parsing_create_params.WebhookConfiguration`). Our API's
`POST /v1/webhooks/llamaparse` and the vendor stand-in both use this module, so they cannot disagree.

Verification authenticates before it parses: the signature is checked over the exact bytes received
(re-serialised JSON would not match), compared in constant time, and only then is the body read. The
event's `timestamp` must lie within `tolerance_s` of `now` either way, so a captured delivery cannot be
replayed later. Nothing in an event is trusted beyond the job id: the receiver fetches the job itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError

SIGNATURE_HEADER = "LC-Signature"
_SCHEME = "sha256="

# The documented parse events (developers.llamaindex.ai, "Webhooks": Parse Events).
PARSE_PENDING = "parse.pending"
PARSE_SUCCESS = "parse.success"
PARSE_ERROR = "parse.error"
PARSE_PARTIAL_SUCCESS = "parse.partial_success"
PARSE_CANCELLED = "parse.cancelled"
# What a job ends with: the events a waiting worker needs. `parse.pending` would only wake it early.
TERMINAL_EVENTS = (PARSE_SUCCESS, PARSE_ERROR, PARSE_PARTIAL_SUCCESS, PARSE_CANCELLED)


class WebhookEventData(BaseModel):
    model_config = ConfigDict(extra="allow")  # the vendor may add fields; we read only the job id

    job_id: str


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_id: str
    event_type: str
    timestamp: datetime
    data: WebhookEventData


class WebhookVerificationError(Exception):
    """A delivery that must be refused (the API answers 401 and changes nothing)."""


class MissingSecret(WebhookVerificationError):
    """No signing secret is configured: nothing can be verified, so nothing is accepted."""


class MissingSignature(WebhookVerificationError):
    pass


class BadSignature(WebhookVerificationError):
    pass


class StaleEvent(WebhookVerificationError):
    """The signed event's timestamp is too far from now (a replay, or a badly wrong clock)."""


class MalformedEvent(WebhookVerificationError):
    """Correctly signed, but not an event we understand."""


def _digest(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str) -> str:
    """The `LC-Signature` header value for `body`."""
    if not secret:
        raise MissingSecret("no LlamaParse webhook signing secret is configured")
    return _SCHEME + _digest(body, secret)


def verify(
    body: bytes, header: str | None, secret: str, *, now: datetime, tolerance_s: float = 300
) -> WebhookEvent:
    """The event in `body`, or a WebhookVerificationError saying why it is refused."""
    if not secret:
        raise MissingSecret("no LlamaParse webhook signing secret is configured")
    if not header or not header.strip():
        raise MissingSignature(f"the {SIGNATURE_HEADER} header is missing")
    value = header.strip()
    if value[: len(_SCHEME)].lower() != _SCHEME:
        raise BadSignature(f"the {SIGNATURE_HEADER} header is not of the form sha256=<hex>")
    received = value[len(_SCHEME) :].strip().lower().encode("ascii", "replace")
    if not hmac.compare_digest(received, _digest(body, secret).encode("ascii")):
        raise BadSignature(f"the {SIGNATURE_HEADER} signature does not match the body")
    event = _parse(body)
    stamp = _aware(event.timestamp)
    skew = abs((_aware(now) - stamp).total_seconds())
    if skew > tolerance_s:
        raise StaleEvent(f"the event timestamp {stamp.isoformat()} is {skew:.0f}s from now")
    return event


def _parse(body: bytes) -> WebhookEvent:
    try:
        payload = json.loads(body)
        # `webhook_output_format: "string"` (the vendor's default) delivers the event as a JSON string
        # holding the JSON object; we ask for "json", but read either.
        if isinstance(payload, str):
            payload = json.loads(payload)
        return WebhookEvent.model_validate(payload)
    except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedEvent(f"the signed body is not a LlamaParse event: {type(exc).__name__}") from None


def _aware(moment: datetime) -> datetime:
    # A timestamp without a zone is taken as UTC, which is what the vendor's servers speak.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def event_body(event_id: str, event_type: str, job_id: str, *, timestamp: datetime) -> bytes:
    """The bytes of one delivery, as the stand-in sends them (compact JSON, `webhook_output_format: json`)."""
    payload = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": _aware(timestamp).isoformat(),
        "data": {"job_id": job_id},
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")
