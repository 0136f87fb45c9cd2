"""Outbound callbacks, signed per the Standard Webhooks spec (standardwebhooks.com, v1.0.0). Pure, no I/O.

A delivery is a POST of a compact JSON body with three headers:

    webhook-id:        msg_<32 hex>, the same on every retry of one event (the receiver's idempotency key)
    webhook-timestamp: the attempt's Unix time in seconds (each retry signs a new one)
    webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">

The key is the secret's bytes: the spec serialises a secret as `whsec_` + base64 of 24 to 64 random bytes.
The header may carry several space-separated signatures (key rotation); one valid `v1` one is enough.

`verify` is the helper a receiver can copy: it needs nothing but the standard library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
TOLERANCE_S = 300  # the spec's and the reference libraries' replay window, either way of now
MIN_KEY_BYTES = 24  # "at least 24 bytes (192 bits)"

EventType = Literal["document.completed", "document.failed"]


class CallbackData(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: UUID
    job_id: UUID
    status: Literal["completed", "failed"]
    error: str | None = Field(description="One line saying why the document failed; null when completed.")
    chunks: int = Field(description="Searchable chunks of the document (0 when failed).")
    cost_usd: str | None = Field(
        default=None, description="Real money charged for the document, an exact decimal in a string."
    )


class CallbackEvent(BaseModel):
    """The body of one callback: `{type, timestamp, data}`, the spec's recommended payload shape."""

    model_config = ConfigDict(frozen=True)

    type: EventType
    timestamp: datetime = Field(description="When the document finished (not when this attempt was made).")
    data: CallbackData

    def body(self) -> bytes:
        """The exact bytes sent and signed: compact JSON, so a receiver can verify without re-serialising."""
        return self.model_dump_json().encode("utf-8")


class CallbackVerificationError(Exception):
    """A delivery the receiver must refuse."""


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the reference libraries)."""
    # Unpadded base64 is common in copied secrets: the padding is put right before decoding.
    encoded = secret.strip().removeprefix(SECRET_PREFIX).rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a callback signing secret is whsec_ followed by base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a callback signing secret needs at least {MIN_KEY_BYTES} random bytes")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value, `v1,<base64>`."""
    if "." in message_id:
        # The id and timestamp are joined with dots: a dot in either could make two messages sign alike.
        raise ValueError("a webhook id may not contain '.'")
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(
    secret: str, message_id: str, body: bytes, *, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt, signed at `now` (default: the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> Any:
    """Check a received callback and return its parsed JSON body; raise CallbackVerificationError if not.

    Pass the raw body as received (parsing and re-serialising it would change the bytes) and the request's
    headers (any letter case). Then use `webhook-id` to ignore an event you have already handled.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    message_id = lower.get(ID_HEADER, "")
    stamp = lower.get(TIMESTAMP_HEADER, "")
    signatures = lower.get(SIGNATURE_HEADER, "")
    if not (message_id and stamp and signatures):
        raise CallbackVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if "." in message_id:
        raise CallbackVerificationError("webhook-id may not contain '.'")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise CallbackVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise CallbackVerificationError("webhook-timestamp is too far from now (a replay, or a wrong clock)")
    expected = sign(secret, message_id, timestamp, body).encode("ascii")
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        # Compare every v1 signature in constant time; other versions (v1a: asymmetric) are not ours.
        if version == "v1" and hmac.compare_digest(f"v1,{value}".encode("ascii", "replace"), expected):
            return json.loads(body)
    raise CallbackVerificationError("no webhook-signature matches")
